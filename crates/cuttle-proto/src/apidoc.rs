//! Renders the API reference (`docs/api.md`) from the compiled protos and their comments,
//! so the reference can never say something the protos do not. A test compares the file
//! with this output; `cargo run -p cuttle-proto --example api-doc > docs/api.md` rewrites it.

use std::fmt::Write;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet, SourceCodeInfo};

/// Field numbers in `FileDescriptorProto` and friends, used as source-location paths.
const MESSAGE_TYPE: i32 = 4;
const ENUM_TYPE: i32 = 5;
const SERVICE: i32 = 6;
const FIELD: i32 = 2;
const ENUM_VALUE: i32 = 2;
const METHOD: i32 = 2;

/// The leading comment attached to the element at `path`, joined into one paragraph.
fn comment(info: Option<&SourceCodeInfo>, path: &[i32]) -> String {
    info.and_then(|info| info.location.iter().find(|loc| loc.path == path))
        .and_then(|loc| loc.leading_comments.as_deref())
        .map(|text| text.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn short_type(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn field_type(field: &FieldDescriptorProto) -> String {
    let base = match field.r#type() {
        Type::Message | Type::Enum => format!(
            "[{0}](#{1})",
            short_type(field.type_name()),
            short_type(field.type_name()).to_lowercase()
        ),
        Type::String => "string".into(),
        Type::Bool => "bool".into(),
        Type::Int64 => "int64".into(),
        Type::Uint64 => "uint64".into(),
        Type::Int32 => "int32".into(),
        Type::Uint32 => "uint32".into(),
        Type::Bytes => "bytes".into(),
        Type::Double => "double".into(),
        other => format!("{other:?}").to_lowercase(),
    };
    if field.label() == Label::Repeated {
        format!("repeated {base}")
    } else if field.proto3_optional() {
        format!("optional {base}")
    } else {
        base
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Every RPC of package cuttle.v1 as `Service/Method`, sorted: for tests that must cover
/// them all.
pub fn rpc_names() -> Vec<String> {
    let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)
        .expect("the build script wrote a valid descriptor set");
    let mut names: Vec<String> = set
        .file
        .iter()
        .filter(|f| f.package() == "cuttle.v1")
        .flat_map(|f| &f.service)
        .flat_map(|service| {
            service
                .method
                .iter()
                .map(move |method| format!("{}/{}", service.name(), method.name()))
        })
        .collect();
    names.sort();
    names
}

/// The whole reference as Markdown.
pub fn render() -> String {
    let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET)
        .expect("the build script wrote a valid descriptor set");
    let mut files: Vec<&FileDescriptorProto> = set
        .file
        .iter()
        .filter(|f| f.package() == "cuttle.v1")
        .collect();
    files.sort_by_key(|f| f.name().to_owned());
    let mut out = String::new();
    let _ = writeln!(out, "# cuttle gRPC API reference (`cuttle.v1`)\n");
    let _ = writeln!(
        out,
        "Generated from `proto/cuttle/v1/*.proto` by `cargo run -p cuttle-proto --example api-doc > docs/api.md`; \
         a test fails when this file and the protos disagree. Errors are gRPC status codes with a human message; \
         each RPC's comment lists the codes it returns.\n"
    );
    let _ = writeln!(out, "## Services\n");
    for file in &files {
        let info = file.source_code_info.as_ref();
        for (s, service) in file.service.iter().enumerate() {
            let s = s as i32;
            let _ = writeln!(out, "### {} (`{}`)\n", service.name(), file.name());
            let _ = writeln!(out, "{}\n", comment(info, &[SERVICE, s]));
            let _ = writeln!(
                out,
                "| RPC | Request | Response | Description |\n|---|---|---|---|"
            );
            for (m, method) in service.method.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "| `{}` | [{}](#{}) | [{}](#{}) | {} |",
                    method.name(),
                    short_type(method.input_type()),
                    short_type(method.input_type()).to_lowercase(),
                    short_type(method.output_type()),
                    short_type(method.output_type()).to_lowercase(),
                    cell(&comment(info, &[SERVICE, s, METHOD, m as i32]))
                );
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "## Messages\n");
    for file in &files {
        let info = file.source_code_info.as_ref();
        for (i, message) in file.message_type.iter().enumerate() {
            let i = i as i32;
            let _ = writeln!(out, "### {}\n", message.name());
            let _ = writeln!(out, "{}\n", comment(info, &[MESSAGE_TYPE, i]));
            if message.field.is_empty() {
                let _ = writeln!(out, "No fields.\n");
                continue;
            }
            let _ = writeln!(out, "| Field | # | Type | Description |\n|---|---|---|---|");
            for (f, field) in message.field.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    field.name(),
                    field.number(),
                    field_type(field),
                    cell(&comment(info, &[MESSAGE_TYPE, i, FIELD, f as i32]))
                );
            }
            out.push('\n');
        }
    }
    let _ = writeln!(out, "## Enums\n");
    for file in &files {
        let info = file.source_code_info.as_ref();
        for (e, enumeration) in file.enum_type.iter().enumerate() {
            let e = e as i32;
            let _ = writeln!(out, "### {}\n", enumeration.name());
            let _ = writeln!(out, "{}\n", comment(info, &[ENUM_TYPE, e]));
            let _ = writeln!(out, "| Value | # | Description |\n|---|---|---|");
            for (v, value) in enumeration.value.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} |",
                    value.name(),
                    value.number(),
                    cell(&comment(info, &[ENUM_TYPE, e, ENUM_VALUE, v as i32]))
                );
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_rpc_message_and_field_is_documented() {
        let rendered = super::render();
        assert!(rendered.contains("| `LockNodes` |"), "{rendered}");
        // An empty description cell means a proto element without a comment.
        let undocumented: Vec<&str> = rendered
            .lines()
            .filter(|line| line.ends_with("|  |"))
            .collect();
        assert!(
            undocumented.is_empty(),
            "undocumented proto elements:\n{}",
            undocumented.join("\n")
        );
    }

    #[test]
    fn docs_api_md_matches_the_protos() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == super::render(),
            "docs/api.md is out of date with proto/cuttle/v1; regenerate it with\n  cargo run -p cuttle-proto --example api-doc > docs/api.md"
        );
    }
}
