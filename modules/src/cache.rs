//! `cache`: the exact response cache's settings and its key. A repeated
//! request — the same endpoint, resolved provider and model, and the same
//! body up to object key order, whitespace and the framing members — is
//! answered from the stored final message instead of going upstream.
//!
//! The key must change whenever anything that can change the answer
//! changes: every member of the request body counts (sampling parameters,
//! tools, `system`, provider-specific and unknown new members) except
//! `stream` and `stream_options`, which only frame the answer, and `model`,
//! which is replaced by the model the request resolved to. The exact
//! encoding is documented in `docs/CACHE.md`; storing, serving and purging
//! are the proxy's and the store's.

use crate::invalid::Invalid;
use serde_json::Value;

/// `[modules.cache]`. Off by default: a cache changes what clients get (a
/// repeated request with a non-zero temperature gets the same answer).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub enabled: bool,
    /// Whose entries a request may be served from.
    pub namespace: Namespace,
    /// How long an entry is served (a request may ask for another TTL for
    /// the entry it stores with `x-tollgate-cache-ttl`).
    pub ttl_secs: u64,
    /// The most bytes of entries kept in the database; beyond, the least
    /// recently used go first.
    pub max_bytes: u64,
    /// The most bytes of entries kept in memory (the hot tier).
    pub memory_bytes: u64,
    /// Answers larger than this are not stored.
    pub max_entry_bytes: u64,
}

/// Per client key (`key`: a key is never served another key's answers), or
/// one namespace for all (`shared`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Namespace {
    #[default]
    Key,
    Shared,
}

/// The namespace name of `shared` entries (client key ids never take it:
/// they are `ck_`-prefixed or `anonymous`).
pub const SHARED: &str = "shared";

/// The longest TTL a setting or a request may ask for: one year.
pub const MAX_TTL_SECS: u64 = 365 * 24 * 3600;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            namespace: Namespace::Key,
            ttl_secs: 3600,
            max_bytes: 256 * 1024 * 1024,
            memory_bytes: 32 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
        }
    }
}

impl Settings {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=MAX_TTL_SECS).contains(&self.ttl_secs) {
            return Err(Invalid::new(
                "ttl_secs",
                format!("must be between 1 and {MAX_TTL_SECS}"),
            ));
        }
        if self.max_entry_bytes == 0 {
            return Err(Invalid::new("max_entry_bytes", "must be at least 1"));
        }
        if self.max_bytes < self.max_entry_bytes {
            return Err(Invalid::new(
                "max_bytes",
                "must be at least max_entry_bytes",
            ));
        }
        Ok(())
    }

    /// The namespace a request authenticated as `key_id` reads and writes.
    pub fn namespace_of<'a>(&self, key_id: &'a str) -> &'a str {
        match self.namespace {
            Namespace::Key => key_id,
            Namespace::Shared => SHARED,
        }
    }
}

/// The top-level body members left out of the key: they frame the answer
/// (`stream`, `stream_options`) or are replaced by the resolved model.
pub const IGNORED_MEMBERS: [&str; 3] = ["model", "stream", "stream_options"];

/// Version tag, first in the encoding: changing the encoding changes it.
pub const KEY_VERSION: &str = "tollgate.cache.v1";

/// What a cache key is computed over.
pub struct KeyInput<'a> {
    pub namespace: &'a str,
    /// The path the client called (`/v1/chat/completions`).
    pub endpoint: &'a str,
    /// The provider and model the request resolved to.
    pub provider: &'a str,
    pub model: &'a str,
    /// The client's body (a JSON object).
    pub body: &'a Value,
}

/// BLAKE3 of the canonical encoding of `input` (see [`canonical`]).
pub fn key(input: &KeyInput<'_>) -> [u8; 32] {
    *blake3::hash(&canonical(input)).as_bytes()
}

/// BLAKE3 over the request's exact bytes and what else [`key`] covers
/// (each length-prefixed): a shortcut, not a key. Equal inputs give equal
/// keys, so a process may remember [`key`] per `raw_key` and skip parsing
/// and canonicalising a body it has already seen byte for byte.
pub fn raw_key(
    namespace: &str,
    endpoint: &str,
    provider: &str,
    model: &str,
    body: &[u8],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for s in [KEY_VERSION, namespace, endpoint, provider, model] {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    }
    h.update(body);
    *h.finalize().as_bytes()
}

/// The bytes hashed: the canonical JSON of the array
/// `[KEY_VERSION, namespace, endpoint, provider, model, body]`, the body
/// without [`IGNORED_MEMBERS`] at the top level. Canonical JSON: no
/// whitespace, object members sorted by key (byte order, recursively),
/// strings escaped as serde_json escapes them, numbers as serde_json prints
/// them.
pub fn canonical(input: &KeyInput<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    for s in [
        KEY_VERSION,
        input.namespace,
        input.endpoint,
        input.provider,
        input.model,
    ] {
        write_string(&mut out, s);
        out.push(b',');
    }
    match input.body {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map
                .iter()
                .filter(|(k, _)| !IGNORED_MEMBERS.contains(&k.as_str()))
                .collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            write_members(&mut out, &members);
        }
        other => write_value(&mut out, other),
    }
    out.push(b']');
    out
}

fn write_members(out: &mut Vec<u8>, members: &[(&String, &Value)]) {
    out.push(b'{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            write_members(out, &members);
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        // Scalars print without whitespace already.
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(Value::String(s.to_string()).to_string().as_bytes());
}

/// Reads a request's `x-tollgate-cache` header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive {
    /// Neither looked up nor stored.
    Skip,
    /// Not looked up; the answer is stored, replacing any entry.
    Refresh,
}

impl Directive {
    /// `skip` or `refresh` (ASCII case-insensitive); anything else is refused.
    pub fn parse(value: &str) -> Result<Directive, String> {
        let v = value.trim();
        if v.eq_ignore_ascii_case("skip") {
            Ok(Directive::Skip)
        } else if v.eq_ignore_ascii_case("refresh") {
            Ok(Directive::Refresh)
        } else {
            Err("must be `skip` or `refresh`".into())
        }
    }
}

/// Reads an `x-tollgate-cache-ttl` header value: whole seconds, 1 to
/// [`MAX_TTL_SECS`].
pub fn parse_ttl(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_TTL_SECS).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number of seconds between 1 and {MAX_TTL_SECS}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_key_tells_every_part_apart() {
        let base = raw_key("ns", "/v1/chat/completions", "openai", "m", b"{}");
        assert_eq!(
            base,
            raw_key("ns", "/v1/chat/completions", "openai", "m", b"{}")
        );
        for other in [
            raw_key("ns2", "/v1/chat/completions", "openai", "m", b"{}"),
            raw_key("ns", "/v1/messages", "openai", "m", b"{}"),
            raw_key("ns", "/v1/chat/completions", "anthropic", "m", b"{}"),
            raw_key("ns", "/v1/chat/completions", "openai", "m2", b"{}"),
            raw_key("ns", "/v1/chat/completions", "openai", "m", b"{ }"),
            // The parts are length-prefixed: moving a byte between them shows.
            raw_key("n", "s/v1/chat/completions", "openai", "m", b"{}"),
        ] {
            assert_ne!(base, other);
        }
    }
    use serde_json::json;

    fn key_of(body: &Value) -> [u8; 32] {
        key_in("ck_a", body)
    }

    fn key_in(namespace: &str, body: &Value) -> [u8; 32] {
        key(&KeyInput {
            namespace,
            endpoint: "/v1/chat/completions",
            provider: "openai",
            model: "gpt-4o-mini",
            body,
        })
    }

    fn base() -> Value {
        json!({
            "model": "fast",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.2,
        })
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        let body = json!({"b": [1, {"z": null, "a": "é\n"}], "model": "x", "a": true,
                          "stream": true, "stream_options": {"include_usage": true}});
        let bytes = canonical(&KeyInput {
            namespace: "shared",
            endpoint: "/v1/messages",
            provider: "anthropic",
            model: "claude",
            body: &body,
        });
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"["tollgate.cache.v1","shared","/v1/messages","anthropic","claude",{"a":true,"b":[1,{"a":"é\n","z":null}]}]"#
        );
    }

    #[test]
    fn framing_and_order_do_not_count() {
        let a = key_of(&base());
        let reordered: Value = serde_json::from_str(
            r#"{ "temperature" : 0.2, "messages": [ {"content":"hi","role":"user"} ],
                 "model": "other-alias", "stream": true, "stream_options": {"include_usage": true} }"#,
        )
        .unwrap();
        assert_eq!(a, key_of(&reordered));
    }

    #[test]
    fn everything_else_counts() {
        let a = key_of(&base());
        let changes = [
            json!({"temperature": 0.3}),
            json!({"top_p": 0.9}),
            json!({"seed": 1}),
            json!({"tools": []}),
            json!({"tool_choice": "none"}),
            json!({"response_format": {"type": "json_object"}}),
            json!({"reasoning_effort": "low"}),
            json!({"system": "be terse"}),
            json!({"some_new_field": 1}),
            json!({"messages": [{"role": "user", "content": "hi!"}]}),
        ];
        for change in changes {
            let mut body = base();
            for (k, v) in change.as_object().unwrap() {
                body[k] = v.clone();
            }
            assert_ne!(a, key_of(&body), "{change}");
        }
        assert_ne!(a, key_in("ck_b", &base()));
        let other = |provider: &str, model: &str, endpoint: &str| {
            key(&KeyInput {
                namespace: "ck_a",
                endpoint,
                provider,
                model,
                body: &base(),
            })
        };
        assert_ne!(a, other("azure", "gpt-4o-mini", "/v1/chat/completions"));
        assert_ne!(a, other("openai", "gpt-4o", "/v1/chat/completions"));
        assert_ne!(a, other("openai", "gpt-4o-mini", "/v1/embeddings"));
        // A nested `stream` member is content, not framing.
        let mut nested = base();
        nested["metadata"] = json!({"stream": true});
        let mut nested2 = base();
        nested2["metadata"] = json!({"stream": false});
        assert_ne!(key_of(&nested), key_of(&nested2));
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(Settings::default().validate(), Ok(()));
        assert!(!Settings::default().enabled);
        let bad = |s: Settings| s.validate().unwrap_err().field;
        assert_eq!(
            bad(Settings {
                ttl_secs: 0,
                ..Settings::default()
            }),
            "ttl_secs"
        );
        assert_eq!(
            bad(Settings {
                max_bytes: 10,
                max_entry_bytes: 11,
                ..Settings::default()
            }),
            "max_bytes"
        );
        let shared = Settings {
            namespace: Namespace::Shared,
            ..Settings::default()
        };
        assert_eq!(shared.namespace_of("ck_x"), SHARED);
        assert_eq!(Settings::default().namespace_of("ck_x"), "ck_x");
    }

    #[test]
    fn request_controls_are_parsed_strictly() {
        assert_eq!(Directive::parse("SKIP"), Ok(Directive::Skip));
        assert_eq!(Directive::parse("refresh"), Ok(Directive::Refresh));
        assert!(Directive::parse("hit").is_err());
        assert_eq!(parse_ttl("60"), Ok(60));
        for bad in ["0", "-1", "1.5", "x", "", "99999999999"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                "[a-z é\"\\\\]{0,6}".prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-e]{1,2}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// The same value with every object's members in reverse order.
        fn reversed(v: &Value) -> Value {
            match v {
                Value::Object(m) => Value::Object(
                    m.iter()
                        .rev()
                        .map(|(k, v)| (k.clone(), reversed(v)))
                        .collect(),
                ),
                Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
                other => other.clone(),
            }
        }

        /// Every scalar leaf's path, for changing one.
        fn change_first_leaf(v: &mut Value) -> bool {
            match v {
                Value::Object(m) => m.values_mut().any(change_first_leaf),
                Value::Array(a) => a.iter_mut().any(change_first_leaf),
                Value::Null => {
                    *v = json!(0);
                    true
                }
                Value::Bool(b) => {
                    *b = !*b;
                    true
                }
                Value::Number(n) => {
                    *v = json!(n.as_i64().unwrap_or(0).wrapping_add(1));
                    true
                }
                Value::String(s) => {
                    s.push('x');
                    true
                }
            }
        }

        fn body_of(members: Value) -> Value {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            body["params"] = members;
            body
        }

        proptest! {
            #[test]
            fn permuting_keys_never_changes_the_key(v in json_value()) {
                let body = body_of(v);
                prop_assert_eq!(key_of(&body), key_of(&reversed(&body)));
                let text = serde_json::to_string_pretty(&reversed(&body)).unwrap();
                let reparsed: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(key_of(&body), key_of(&reparsed));
            }

            #[test]
            fn changing_any_value_changes_the_key(v in json_value()) {
                let body = body_of(v);
                let mut changed = body.clone();
                prop_assert!(change_first_leaf(&mut changed["params"]) || changed == body);
                if changed != body {
                    prop_assert_ne!(key_of(&body), key_of(&changed));
                }
            }
        }
    }
}
