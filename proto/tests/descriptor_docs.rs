//! The `.proto` files are the protocol's reference documentation, so every
//! message, field, oneof, enum, enum value, service and rpc must carry a
//! leading comment. These tests read the comments back out of
//! `FILE_DESCRIPTOR_SET` (which `build.rs` compiles with source info) and
//! also check the naming conventions that `common.proto` promises.

use std::collections::BTreeMap;

use drover_proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::field_descriptor_proto::Type;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet};

// Field numbers of the descriptor messages, which is what
// `SourceCodeInfo.Location.path` is made of (see descriptor.proto).
const FILE_MESSAGE_TYPE: i32 = 4;
const FILE_ENUM_TYPE: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED_TYPE: i32 = 3;
const MESSAGE_ENUM_TYPE: i32 = 4;
const MESSAGE_ONEOF_DECL: i32 = 8;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

/// Returns a description of every declaration in `file` without a non-empty
/// leading comment, such as `drover.v1.LeasedTask.fencing_token (field)`.
fn undocumented(file: &FileDescriptorProto) -> Vec<String> {
    let comments: BTreeMap<&[i32], &str> = file
        .source_code_info
        .as_ref()
        .map(|info| {
            info.location
                .iter()
                .map(|loc| (loc.path.as_slice(), loc.leading_comments()))
                .collect()
        })
        .unwrap_or_default();
    let mut walker = Walker {
        comments,
        missing: Vec::new(),
    };
    let prefix = file.package().to_owned();
    for (i, message) in file.message_type.iter().enumerate() {
        walker.message(&prefix, &[FILE_MESSAGE_TYPE, index(i)], message);
    }
    for (i, enumeration) in file.enum_type.iter().enumerate() {
        walker.enumeration(&prefix, &[FILE_ENUM_TYPE, index(i)], enumeration);
    }
    for (i, service) in file.service.iter().enumerate() {
        let path = [FILE_SERVICE, index(i)];
        let name = format!("{prefix}.{}", service.name());
        walker.check(&path, &name, "service");
        for (j, method) in service.method.iter().enumerate() {
            let method_path = [FILE_SERVICE, index(i), SERVICE_METHOD, index(j)];
            walker.check(&method_path, &format!("{name}.{}", method.name()), "rpc");
        }
    }
    walker.missing
}

fn index(i: usize) -> i32 {
    i32::try_from(i).expect("descriptor index fits in i32")
}

/// Walks declarations and records those whose location has no comment.
struct Walker<'a> {
    /// Leading comment of each source location, keyed by its path.
    comments: BTreeMap<&'a [i32], &'a str>,
    /// Declarations found without a comment, in walk order.
    missing: Vec<String>,
}

impl Walker<'_> {
    fn check(&mut self, path: &[i32], name: &str, what: &str) {
        let documented = self
            .comments
            .get(path)
            .is_some_and(|comment| !comment.trim().is_empty());
        if !documented {
            self.missing.push(format!("{name} ({what})"));
        }
    }

    fn message(&mut self, prefix: &str, path: &[i32], message: &DescriptorProto) {
        // `map<K, V>` fields compile to synthetic entry messages that have no
        // source of their own; the map field itself is checked instead.
        if message.options.as_ref().is_some_and(|o| o.map_entry()) {
            return;
        }
        let name = format!("{prefix}.{}", message.name());
        self.check(path, &name, "message");
        for (i, field) in message.field.iter().enumerate() {
            let field_path = [path, &[MESSAGE_FIELD, index(i)]].concat();
            self.check(&field_path, &format!("{name}.{}", field.name()), "field");
        }
        for (i, oneof) in message.oneof_decl.iter().enumerate() {
            let oneof_path = [path, &[MESSAGE_ONEOF_DECL, index(i)]].concat();
            self.check(&oneof_path, &format!("{name}.{}", oneof.name()), "oneof");
        }
        for (i, nested) in message.nested_type.iter().enumerate() {
            let nested_path = [path, &[MESSAGE_NESTED_TYPE, index(i)]].concat();
            self.message(&name, &nested_path, nested);
        }
        for (i, enumeration) in message.enum_type.iter().enumerate() {
            let enum_path = [path, &[MESSAGE_ENUM_TYPE, index(i)]].concat();
            self.enumeration(&name, &enum_path, enumeration);
        }
    }

    fn enumeration(&mut self, prefix: &str, path: &[i32], enumeration: &EnumDescriptorProto) {
        let name = format!("{prefix}.{}", enumeration.name());
        self.check(path, &name, "enum");
        for (i, value) in enumeration.value.iter().enumerate() {
            let value_path = [path, &[ENUM_VALUE, index(i)]].concat();
            self.check(
                &value_path,
                &format!("{name}.{}", value.name()),
                "enum value",
            );
        }
    }
}

#[test]
fn descriptor_set_holds_every_drover_file_with_source_info() {
    let set = descriptor_set();
    let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
    for expected in ["common", "job", "worker", "admin", "raft"] {
        let name = format!("drover/v1/{expected}.proto");
        assert!(
            names.contains(&name.as_str()),
            "{name} missing from {names:?}"
        );
    }
    for file in &set.file {
        assert_eq!(file.package(), "drover.v1", "package of {}", file.name());
        assert!(
            file.source_code_info.is_some(),
            "{} was compiled without source info, so comments cannot be checked",
            file.name()
        );
    }
}

#[test]
fn every_declaration_has_a_leading_comment() {
    let missing: Vec<String> = descriptor_set()
        .file
        .iter()
        .flat_map(undocumented)
        .collect();
    assert!(
        missing.is_empty(),
        "{} declarations have no leading comment:\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

/// Guards the test above against passing vacuously: removing one comment
/// must be reported, by name.
#[test]
fn a_removed_comment_is_reported_by_name() {
    let mut set = descriptor_set();
    let file = set
        .file
        .iter_mut()
        .find(|f| f.name() == "drover/v1/worker.proto")
        .expect("worker.proto is in the set");
    let (message_index, message) = file
        .message_type
        .iter()
        .enumerate()
        .find(|(_, m)| m.name() == "LeasedTask")
        .expect("LeasedTask is in worker.proto");
    let field_index = message
        .field
        .iter()
        .position(|f| f.name() == "fencing_token")
        .expect("LeasedTask has fencing_token");
    let path = [
        FILE_MESSAGE_TYPE,
        index(message_index),
        MESSAGE_FIELD,
        index(field_index),
    ];
    let info = file.source_code_info.as_mut().expect("source info");
    let location = info
        .location
        .iter_mut()
        .find(|loc| loc.path == path)
        .expect("fencing_token has a source location");
    location.leading_comments = Some("  \n".to_owned());

    assert_eq!(
        undocumented(file),
        vec!["drover.v1.LeasedTask.fencing_token (field)".to_owned()]
    );
}

#[test]
fn every_enum_starts_with_its_unspecified_value_and_prefixes_its_values() {
    let mut problems = Vec::new();
    for file in descriptor_set().file {
        let nested = file.message_type.iter().flat_map(|m| m.enum_type.iter());
        for enumeration in file.enum_type.iter().chain(nested) {
            let prefix = screaming_snake(enumeration.name());
            let zero = enumeration.value.first();
            if zero.map(|v| (v.name(), v.number())) != Some((&format!("{prefix}_UNSPECIFIED"), 0)) {
                problems.push(format!(
                    "{}: first value is not {prefix}_UNSPECIFIED = 0",
                    enumeration.name()
                ));
            }
            for value in &enumeration.value {
                if !value.name().starts_with(&format!("{prefix}_")) {
                    problems.push(format!(
                        "{}: value {} lacks prefix {prefix}_",
                        enumeration.name(),
                        value.name()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Times and durations are int64 milliseconds with the unit last in the
/// name (`lease_ttl_ms`, `created_unix_ms`), never well-known types.
#[test]
fn times_and_durations_are_int64_milliseconds_named_with_their_unit() {
    let mut problems = Vec::new();
    for file in descriptor_set().file {
        assert!(
            file.dependency.iter().all(|d| d.starts_with("drover/")),
            "{} imports {:?}; use int64 *_ms instead of google.protobuf types",
            file.name(),
            file.dependency
        );
        for message in &file.message_type {
            for field in &message.field {
                let name = field.name();
                let is_int64 = field.r#type() == Type::Int64;
                if is_int64 && !name.ends_with("_ms") {
                    problems.push(format!(
                        "{}.{name}: int64 but not named *_ms",
                        message.name()
                    ));
                }
                if name.ends_with("_ms") && !is_int64 {
                    problems.push(format!(
                        "{}.{name}: named *_ms but not int64",
                        message.name()
                    ));
                }
                if name.contains("unix") && !name.ends_with("_unix_ms") {
                    problems.push(format!(
                        "{}.{name}: instants are named *_unix_ms",
                        message.name()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `TaskKind` becomes `TASK_KIND`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}
