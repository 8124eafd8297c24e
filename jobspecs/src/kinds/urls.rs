//! Dataset URLs in kind configs.

use crate::decode;
use crate::diagnostic::Diagnostics;
use crate::yaml::Node;

/// Schemes the data plane reads and writes (through `object_store`).
pub const URL_SCHEMES: &[&str] = &["file", "s3"];

/// Decodes a dataset URL such as `file://./drover-data/x` or `s3://bucket/x`.
/// Paths without a scheme are rejected: whether a bare path is local or in a
/// bucket is exactly the guess that writes data to the wrong place.
pub fn url(d: &mut Diagnostics, node: &Node, path: &str) -> Option<String> {
    let text = decode::bounded_string(d, node, path, 2048)?;
    let Some((scheme, rest)) = text.split_once("://") else {
        d.error_hint(
            node.span,
            path,
            format!("`{}` is not a dataset URL", decode::truncate(&text, 60)),
            format!(
                "write `file://{}` for a local path, or `s3://BUCKET/PREFIX`",
                text.trim_start_matches("./")
            ),
        );
        return None;
    };
    if !URL_SCHEMES.contains(&scheme) {
        let hint = match decode::suggest(scheme, URL_SCHEMES) {
            Some(s) => format!("did you mean `{s}://`?"),
            None => "supported schemes: file://, s3://".to_owned(),
        };
        d.error_hint(
            node.span,
            path,
            format!("unsupported URL scheme `{scheme}://`"),
            hint,
        );
        return None;
    }
    if rest.is_empty() || (scheme == "s3" && rest.starts_with('/')) {
        d.error_hint(
            node.span,
            path,
            format!("`{text}` names no location"),
            "e.g. `s3://my-bucket/exports` or `file://./drover-data/out`",
        );
        return None;
    }
    // A spec names where its data lives; climbing out of that place with
    // `..` is how a spec would read or write another team's data.
    if rest.split(['/', '\\']).any(|segment| segment == "..") {
        d.error_hint(
            node.span,
            path,
            format!(
                "`{}` climbs out of its location with `..`",
                decode::truncate(&text, 60)
            ),
            "name the dataset's location itself, without `..` segments",
        );
        return None;
    }
    Some(text)
}
