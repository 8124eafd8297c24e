//! Dataset URLs in kind configs, and which locations contain which.

use crate::decode;
use crate::diagnostic::Diagnostics;
use crate::yaml::Node;

/// Schemes the data plane reads and writes (through `object_store`).
pub const URL_SCHEMES: &[&str] = &["file", "s3"];

/// Longest dataset URL.
pub const URL_BYTES_MAX: usize = 2048;

/// Decodes a dataset URL such as `file://./drover-data/x` or `s3://bucket/x`.
pub fn url(d: &mut Diagnostics, node: &Node, path: &str) -> Option<String> {
    let text = decode::bounded_string(d, node, path, URL_BYTES_MAX)?;
    match problem(&text) {
        None => Some(text),
        Some((message, hint)) => {
            d.error_hint(node.span, path, message, hint);
            None
        }
    }
}

/// Why `text` is not a dataset URL a spec may name, as a message and a
/// hint; `None` when it is one.
pub fn problem(text: &str) -> Option<(String, String)> {
    // Paths without a scheme are refused: whether a bare path is local or
    // in a bucket is exactly the guess that writes data to the wrong place.
    let Some((scheme, rest)) = text.split_once("://") else {
        return Some((
            format!("`{}` is not a dataset URL", decode::truncate(text, 60)),
            format!(
                "write `file://{}` for a local path, or `s3://BUCKET/PREFIX`",
                decode::truncate(text.trim_start_matches("./"), 60)
            ),
        ));
    };
    if !URL_SCHEMES.contains(&scheme) {
        let hint = match decode::suggest(scheme, URL_SCHEMES) {
            Some(s) => format!("did you mean `{s}://`?"),
            None => "supported schemes: file://, s3://".to_owned(),
        };
        return Some((
            format!(
                "unsupported URL scheme `{}://`",
                decode::truncate(scheme, 20)
            ),
            hint,
        ));
    }
    if rest.is_empty() || (scheme == "s3" && rest.starts_with('/')) {
        return Some((
            format!("`{}` names no location", decode::truncate(text, 60)),
            "e.g. `s3://my-bucket/exports` or `file://./drover-data/out`".to_owned(),
        ));
    }
    if scheme == "s3" {
        let bucket = rest.split('/').next().unwrap_or_default();
        // `s3://KEY:SECRET@bucket` would store the credentials with the
        // spec, for every reader of the job to see.
        if bucket.contains(['@', ':']) {
            return Some((
                "an s3:// URL must not carry credentials".to_owned(),
                "workers take S3 credentials from their environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or instance role; write `s3://BUCKET/PREFIX`".to_owned(),
            ));
        }
        // A presigned URL's query holds a signature; an S3 location has
        // no query or fragment.
        if rest.contains(['?', '#']) {
            return Some((
                format!(
                    "`{}` has a query or fragment",
                    decode::truncate(text, 60)
                ),
                "a dataset location is `s3://BUCKET/PREFIX`; presigned URLs are not supported and carry credentials".to_owned(),
            ));
        }
    }
    // A spec names where its data lives; climbing out of that place with
    // `..` is how a spec would read or write another team's data.
    if rest.split(['/', '\\']).any(|segment| segment == "..") {
        return Some((
            format!(
                "`{}` climbs out of its location with `..`",
                decode::truncate(text, 60)
            ),
            "name the dataset's location itself, without `..` segments".to_owned(),
        ));
    }
    None
}

/// `url` in a canonical form, so equal locations compare equal: empty and
/// `.` segments dropped (but the leading `/` of an absolute path and the
/// leading `./` of a relative one kept), no trailing slash.
pub fn normalize(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.trim_end_matches('/').to_owned();
    };
    let mut out = format!("{scheme}://");
    if scheme == "file" {
        if rest.starts_with('/') {
            out.push('/');
        } else if rest.starts_with("./") || rest == "." {
            out.push_str("./");
        }
    }
    let segments: Vec<&str> = rest
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    out.push_str(&segments.join("/"));
    out
}

/// Whether every location `url` can name lies at or below `prefix` (a
/// dataset URL without references). A `${...}` reference in `url` is
/// resolved only at lease time, so what follows it is unknown: only the
/// whole segments before the reference count, and a reference inside a
/// segment (`s3://b/team-${partition.key}`) does not place the URL below
/// that segment. Matching is by whole segments: `s3://b/team-a` does not
/// contain `s3://b/team-ab`.
pub fn is_under(url: &str, prefix: &str) -> bool {
    let prefix = normalize(prefix);
    let known = match url.find("${") {
        None => normalize(url),
        Some(at) => {
            let before = &url[..at];
            // Drop the segment the reference is in, finished or not.
            match before.rfind('/') {
                Some(slash) if before[..slash].contains("://") => normalize(&before[..slash]),
                _ => return false,
            }
        }
    };
    // `file:///` and `file://./` end in their separator already.
    let below = if prefix.ends_with('/') {
        prefix.clone()
    } else {
        format!("{prefix}/")
    };
    known == prefix || known.starts_with(&below)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        assert_eq!(normalize("s3://b/x/"), "s3://b/x");
        assert_eq!(normalize("s3://b//x/./y"), "s3://b/x/y");
        assert_eq!(normalize("file:///data//a/"), "file:///data/a");
        assert_eq!(
            normalize("file://./drover-data/./a"),
            "file://./drover-data/a"
        );
        assert_eq!(normalize("file://drover-data/a"), "file://drover-data/a");
    }

    #[test]
    fn containment_is_by_whole_segments() {
        assert!(is_under("s3://b/team-a", "s3://b/team-a"));
        assert!(is_under("s3://b/team-a/x/y", "s3://b/team-a/"));
        assert!(!is_under("s3://b/team-ab/x", "s3://b/team-a"));
        assert!(!is_under("s3://b", "s3://b/team-a"));
        assert!(!is_under("s3://other/team-a", "s3://b/team-a"));
        assert!(is_under("file:///data/team-a/in", "file:///data/team-a"));
        assert!(!is_under("file://./data/team-a/in", "file:///data/team-a"));
        assert!(is_under(
            "file://./data/./team-a//in/",
            "file://./data/team-a"
        ));
        // A bucket alone covers the bucket, not its namesakes.
        assert!(is_under("s3://b/x", "s3://b"));
        assert!(!is_under("s3://bb/x", "s3://b"));
        // The root of a file system, or of every worker's directory.
        assert!(is_under("file:///data/x", "file:///"));
        assert!(is_under("file://./data/x", "file://./"));
        assert!(!is_under("file:///data/x", "file://./"));
    }

    #[test]
    fn references_count_only_after_a_whole_segment() {
        assert!(is_under("s3://b/team-a/${partition.key}", "s3://b/team-a"));
        assert!(is_under(
            "s3://b/team-a/day-${partition.key}/x",
            "s3://b/team-a"
        ));
        // The reference extends the segment `team-a` itself.
        assert!(!is_under("s3://b/team-a${partition.key}", "s3://b/team-a"));
        assert!(!is_under("s3://b/team-${partition.key}", "s3://b/team-a"));
        assert!(!is_under("s3://${partition.key}/x", "s3://b"));
    }

    #[test]
    fn credentials_and_queries_are_refused_in_s3_urls() {
        assert!(problem("s3://AKIA:secret@bucket/x").is_some());
        assert!(problem("s3://bucket/x?X-Amz-Signature=abc").is_some());
        assert!(problem("s3://bucket/x#frag").is_some());
        assert!(problem("s3://bucket/a@b/x").is_none(), "@ in a key is fine");
        assert!(problem("file:///data/a@b").is_none());
        assert!(problem("s3://bucket/x").is_none());
    }
}
