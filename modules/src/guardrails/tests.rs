//! The guard as the proxy uses it: every shape, every refusal, streams.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn guard(patch: Value) -> Arc<Guard> {
    let base = crate::ModuleSettings::default()
        .with("guardrails", &json!({"enabled": true}))
        .unwrap();
    let s = base.with("guardrails", &patch).unwrap();
    Arc::new(Guard::build(&s.guardrails).unwrap())
}

const CARD: &str = "4111 1111 1111 1111";
const KEY: &str = "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12Mn34";

#[test]
fn chat_requests_are_redacted_in_every_text_part() {
    let g = guard(json!({}));
    let mut body = json!({"model": "m", "messages": [
        {"role": "system", "content": "mail jane@example.com"},
        {"role": "user", "content": [{"type": "text", "text": format!("card {CARD}")},
                                      {"type": "image_url", "image_url": {"url": "https://x/jane@example.com"}}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "f", "arguments": "{\"to\":\"jane@example.com\",\"n\":1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": format!("key {KEY}")}
    ]});
    let f = g
        .inspect_request("k1", RequestShape::ChatCompletions, &mut body)
        .unwrap();
    assert_eq!(body["messages"][0]["content"], "mail [EMAIL_1]");
    assert_eq!(body["messages"][1]["content"][0]["text"], "card [CARD_1]");
    assert_eq!(
        body["messages"][1]["content"][1]["image_url"]["url"],
        "https://x/jane@example.com"
    );
    let args: Value = serde_json::from_str(
        body["messages"][2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"to": "[EMAIL_1]", "n": 1}));
    assert_eq!(body["messages"][3]["content"], "key [SECRET_1]");
    assert_eq!(f.redacted, 4);
    assert_eq!(
        f.fired,
        BTreeMap::from([
            ("email".into(), 2),
            ("card".into(), 1),
            ("secret".into(), 1)
        ])
    );
    assert!(!serde_json::to_string(&f).unwrap().contains("jane"));
}

#[test]
fn messages_responses_embeddings_and_completions_requests() {
    let g = guard(json!({}));
    let mut body = json!({"system": [{"type": "text", "text": "ops a@b.io"}], "messages": [
        {"role": "user", "content": "ssn 536-90-4399"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"ip": "10.1.2.3"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "+44 20 7946 0958"}]}]}
    ]});
    g.inspect_request("k", RequestShape::Messages, &mut body)
        .unwrap();
    assert_eq!(body["system"][0]["text"], "ops [EMAIL_1]");
    assert_eq!(body["messages"][0]["content"], "ssn [SSN_1]");
    assert_eq!(body["messages"][1]["content"][0]["input"]["ip"], "[IP_1]");
    assert_eq!(
        body["messages"][2]["content"][0]["content"][0]["text"],
        "[PHONE_1]"
    );

    let mut body = json!({"instructions": "a@b.io", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "iban DE89 3704 0044 0532 0130 00"}]},
        {"type": "function_call_output", "call_id": "c", "output": "b@b.io"}]});
    g.inspect_request("k", RequestShape::Responses, &mut body)
        .unwrap();
    assert_eq!(body["instructions"], "[EMAIL_1]");
    assert_eq!(body["input"][0]["content"][0]["text"], "iban [IBAN_1]");
    assert_eq!(body["input"][1]["output"], "[EMAIL_2]");
    let mut body = json!({"input": "x a@b.io"});
    g.inspect_request("k", RequestShape::Responses, &mut body)
        .unwrap();
    assert_eq!(body["input"], "x [EMAIL_1]");

    let mut body = json!({"input": ["a@b.io", "plain"]});
    g.inspect_request("k", RequestShape::Embeddings, &mut body)
        .unwrap();
    assert_eq!(body["input"], json!(["[EMAIL_1]", "plain"]));
    let mut body = json!({"prompt": ["a@b.io"], "suffix": "c@d.io"});
    g.inspect_request("k", RequestShape::Completions, &mut body)
        .unwrap();
    assert_eq!(
        body,
        json!({"prompt": ["[EMAIL_1]"], "suffix": "[EMAIL_2]"})
    );
}

#[test]
fn token_arrays_are_refused_while_a_rule_would_read_them() {
    let mut body = json!({"input": [[1, 2, 3]]});
    let err = guard(json!({})).inspect_request("k", RequestShape::Embeddings, &mut body);
    assert!(matches!(err, Err(Refusal::Unscannable { .. })));
    let g = guard(json!({"pii_action": "off", "max_input_tokens": 3}));
    assert!(
        g.inspect_request(
            "k",
            RequestShape::Embeddings,
            &mut json!({"input": [1, 2, 3]})
        )
        .is_ok()
    );
    assert_eq!(
        g.inspect_request(
            "k",
            RequestShape::Completions,
            &mut json!({"prompt": [1, 2, 3, 4]})
        ),
        Err(Refusal::TooManyTokens {
            limit: 3,
            estimated: 4
        })
    );
}

#[test]
fn block_mode_refuses_naming_the_rule_only() {
    let g = guard(json!({"pii_action": "block"}));
    let mut body = json!({"messages": [{"role": "user", "content": format!("pay with {CARD}")}]});
    let err = g
        .inspect_request("k", RequestShape::ChatCompletions, &mut body)
        .unwrap_err();
    assert_eq!(
        err,
        Refusal::Blocked {
            rule: "card".into()
        }
    );
    assert!(!err.to_string().contains("4111"));
}

#[test]
fn deny_rules_global_and_per_key() {
    let g = guard(
        json!({"deny": ["(?i)project\\s+bluebird"], "deny_literals": ["TOP SECRET"],
        "keys": {"k2": {"deny_literals": ["acme"], "max_input_tokens": 3}}}),
    );
    let ask = |key: &str, text: &str| {
        g.inspect_request(
            key,
            RequestShape::Messages,
            &mut json!({"messages": [{"role": "user", "content": text}]}),
        )
    };
    assert_eq!(
        ask("k1", "about Project  Bluebird"),
        Err(Refusal::Denied {
            rule: "deny".into()
        })
    );
    assert_eq!(
        ask("k1", "this is top secret"),
        Err(Refusal::Denied {
            rule: "deny_literals".into()
        })
    );
    assert!(ask("k1", "acme").is_ok());
    assert_eq!(
        ask("k2", "ACME"),
        Err(Refusal::Denied {
            rule: "deny_literals".into()
        })
    );
    assert_eq!(
        ask("k2", "top secret"),
        Err(Refusal::Denied {
            rule: "deny_literals".into()
        })
    );
    assert_eq!(
        ask("k2", "123456789abcd"),
        Err(Refusal::TooManyTokens {
            limit: 3,
            estimated: 4
        })
    );
    // Deny rules still apply when PII detection is off on that side.
    let g = guard(json!({"pii_action": "off", "deny_literals": ["bluebird"]}));
    let mut body = json!({"prompt": "bluebird a@b.io"});
    assert!(
        g.inspect_request("k", RequestShape::Completions, &mut body)
            .is_err()
    );
    let mut body = json!({"prompt": "a@b.io"});
    assert_eq!(
        g.inspect_request("k", RequestShape::Completions, &mut body),
        Ok(Findings::default())
    );
    assert_eq!(body["prompt"], "a@b.io");
}

#[test]
fn over_the_scan_limit_fails_closed_and_off_means_untouched() {
    let g = guard(json!({"scan_limit_bytes": 10}));
    let mut body = json!({"prompt": "hello world!"});
    assert!(matches!(
        g.inspect_request("k", RequestShape::Completions, &mut body),
        Err(Refusal::Unscannable { .. })
    ));
    let mut s = g.stream_text("k");
    assert!(s.push("hello ").is_ok());
    assert!(matches!(s.push("world!"), Err(Refusal::Unscannable { .. })));

    let off = guard(json!({"enabled": false, "deny_literals": ["x"], "max_input_tokens": 1}));
    let mut body = json!({"prompt": "x a@b.io"});
    assert_eq!(
        off.inspect_request("k", RequestShape::Completions, &mut body),
        Ok(Findings::default())
    );
    assert_eq!(body["prompt"], "x a@b.io");
    assert_eq!(off.stream_text("k").push("x a@b.io"), Ok("x a@b.io".into()));
}

#[test]
fn responses_of_every_shape() {
    let g = guard(json!({}));
    let mut chat = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "mail a@b.io",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"k\":\"a@b.io\"}"}}]}}]});
    let f = g
        .inspect_response("k", ResponseShape::ChatCompletions, &mut chat)
        .unwrap();
    assert_eq!(chat["choices"][0]["message"]["content"], "mail [EMAIL_1]");
    assert_eq!(
        chat["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"k\":\"[EMAIL_1]\"}"
    );
    assert_eq!(f.redacted, 2);
    let mut msg = json!({"content": [{"type": "text", "text": format!("card {CARD}")},
        {"type": "tool_use", "id": "t", "name": "f", "input": {"a": ["a@b.io"]}}]});
    g.inspect_response("k", ResponseShape::Messages, &mut msg)
        .unwrap();
    assert_eq!(msg["content"][0]["text"], "card [CARD_1]");
    assert_eq!(msg["content"][1]["input"]["a"][0], "[EMAIL_1]");
    let mut resp = json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": "a@b.io"}]},
        {"type": "function_call", "arguments": "{\"x\":\"c@d.io\"}"}]});
    g.inspect_response("k", ResponseShape::Responses, &mut resp)
        .unwrap();
    assert_eq!(resp["output"][0]["content"][0]["text"], "[EMAIL_1]");
    assert_eq!(resp["output"][1]["arguments"], "{\"x\":\"[EMAIL_2]\"}");
    let mut comp = json!({"choices": [{"text": "a@b.io"}]});
    g.inspect_response("k", ResponseShape::Completions, &mut comp)
        .unwrap();
    assert_eq!(comp["choices"][0]["text"], "[EMAIL_1]");

    let block = guard(json!({"response_pii_action": "block", "pii_action": "off"}));
    let mut comp = json!({"choices": [{"text": "a@b.io"}]});
    assert_eq!(
        block.inspect_response("k", ResponseShape::Completions, &mut comp),
        Err(Refusal::Blocked {
            rule: "email".into()
        })
    );
    assert!(
        block
            .inspect_request(
                "k",
                RequestShape::Completions,
                &mut json!({"prompt": "a@b.io"})
            )
            .is_ok()
    );
}

fn stream(g: &Arc<Guard>, pieces: &[&str]) -> Result<String, Refusal> {
    let mut s = g.stream_text("k");
    let mut out = String::new();
    for p in pieces {
        out += &s.push(p)?;
    }
    out += &s.finish()?;
    Ok(out)
}

#[test]
fn a_card_split_over_three_pieces_is_redacted() {
    let g = guard(json!({}));
    let out = stream(&g, &["pay with 4111 11", "11 1111 11", "11 please"]).unwrap();
    assert_eq!(out, "pay with [CARD_1] please");
    let mut s = g.stream_text("k");
    s.push("pay with 4111 11").unwrap();
    assert_eq!(s.findings(), &Findings::default());
}

#[test]
fn deny_on_picks_the_side_the_deny_rules_apply_to() {
    let ask = |g: &Guard| {
        g.inspect_request(
            "k",
            RequestShape::ChatCompletions,
            &mut json!({"messages": [{"role": "user", "content": "about bluebird"}]}),
        )
    };
    let answer = |g: &Guard| {
        g.inspect_response(
            "k",
            ResponseShape::ChatCompletions,
            &mut json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "bluebird it is"}}]}),
        )
    };
    let denied = Err(Refusal::Denied {
        rule: "deny_literals".into(),
    });
    let keyed = json!({"k": {"deny_literals": ["bluebird"]}});
    for rules in [
        json!({"deny_literals": ["bluebird"]}),
        json!({"keys": keyed.clone()}),
    ] {
        let on = |side: &str| {
            let mut patch = rules.clone();
            patch["deny_on"] = side.into();
            guard(patch)
        };
        let both = on("both");
        assert_eq!(ask(&both), denied);
        assert_eq!(answer(&both), denied);
        let request = on("request");
        assert_eq!(ask(&request), denied);
        assert!(answer(&request).is_ok());
        let mut s = request.stream_text("k");
        assert!(s.push("bluebird").is_ok() && s.finish().is_ok());
        let response = on("response");
        assert!(ask(&response).is_ok());
        assert_eq!(answer(&response), denied);
        let mut s = response.stream_text("k");
        let pushed = s.push("bluebird").and_then(|_| s.finish());
        assert_eq!(pushed.map(drop), denied.clone().map(drop));
    }
}

#[test]
fn streams_block_and_deny_before_emitting_the_match() {
    let g = guard(json!({"response_pii_action": "block"}));
    let mut s = g.stream_text("k");
    let mut out = s.push(&"x".repeat(600)).unwrap();
    out += &s.push("and a@b.").unwrap();
    out += &s.push("io more").unwrap();
    assert_eq!(
        s.finish(),
        Err(Refusal::Blocked {
            rule: "email".into()
        })
    );
    assert!(!out.contains('@'));

    let g = guard(json!({"deny_literals": ["bluebird"], "response_pii_action": "off"}));
    let mut s = g.stream_text("k");
    let out = s.push(&format!("{} blue", "y".repeat(300))).unwrap();
    assert!(!out.contains("blue"));
    assert_eq!(
        s.push("bird"),
        Err(Refusal::Denied {
            rule: "deny_literals".into()
        })
    );
    assert_eq!(s.findings().fired["deny_literals"], 1);
    assert!(s.push("more").is_err());
}

#[test]
fn settings_errors_name_the_member() {
    let base = crate::ModuleSettings::default();
    let err = |patch: Value| base.with("guardrails", &patch).unwrap_err().field;
    assert_eq!(err(json!({"deny": ["("]})), "deny");
    assert_eq!(err(json!({"deny": ["a*"]})), "deny");
    assert_eq!(err(json!({"deny_literals": [""]})), "deny_literals");
    assert_eq!(err(json!({"pii_action": "mask"})), "pii_action");
    assert_eq!(err(json!({"rules": ["email", "dna"]})), "rules");
    assert_eq!(err(json!({"rules": ["email", "email"]})), "rules");
    assert_eq!(err(json!({"scan_limit_bytes": 0})), "scan_limit_bytes");
    assert_eq!(err(json!({"max_input_tokens": 0})), "max_input_tokens");
    assert_eq!(err(json!({"keys": {"k": {"deny": ["["]}}})), "keys");
    assert_eq!(err(json!({"keys": {"k": {"nope": 1}}})), "keys");
    let ok = base
        .with(
            "guardrails",
            &json!({"rules": ["email"], "keys": {"k": {"max_input_tokens": 5}}}),
        )
        .unwrap();
    assert_eq!(ok.guardrails.rules, vec![Rule::Email]);
    let g = Guard::build(&ok.guardrails).unwrap();
    let mut body = json!({"prompt": format!("a@b.io {CARD}")});
    g.inspect_request("x", RequestShape::Completions, &mut body)
        .unwrap();
    assert_eq!(
        body["prompt"],
        format!("a@b.io {CARD}"),
        "the module is off"
    );
}

/// Text with PII, near-PII and noise, from fragments.
fn texts() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("jane.doe@example.com".to_string()),
        Just(CARD.to_string()),
        Just("4111111111111111".to_string()),
        Just("536-90-4399".to_string()),
        Just("DE89 3704 0044 0532 0130 00".to_string()),
        Just("192.168.0.1".to_string()),
        Just("2001:db8::1".to_string()),
        Just("+1 415 555 2671".to_string()),
        Just("(415) 555-2671".to_string()),
        Just(KEY.to_string()),
        Just("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln".to_string()),
        Just("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----".to_string()),
        Just("[EMAIL_1]".to_string()),
        "[a-z0-9 .@:+()\\-]{0,12}",
        "[0-9 ]{0,20}",
        "\\PC{0,6}",
    ];
    prop::collection::vec(fragment, 0..24).prop_map(|f| f.concat())
}

fn redact_once(g: &Guard, text: &str) -> (String, Findings) {
    let mut body = json!({"choices": [{"text": text}]});
    let f = g
        .inspect_response("k", ResponseShape::Completions, &mut body)
        .unwrap();
    (body["choices"][0]["text"].as_str().unwrap().to_string(), f)
}

/// All detectors on, compiled once for the property tests.
static ALL_ON: std::sync::LazyLock<Arc<Guard>> = std::sync::LazyLock::new(|| guard(json!({})));

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn redaction_is_idempotent_and_bounded(text in texts()) {
        let g = &*ALL_ON;
        let (once, f) = redact_once(g, &text);
        let (twice, f2) = redact_once(g, &once);
        prop_assert_eq!(&twice, &once);
        prop_assert!(f2.is_empty());
        prop_assert!(once.len() <= text.len() + 16 * f.redacted as usize);
        prop_assert!(once.len() <= 3 * text.len() + 16);
    }

    #[test]
    fn any_split_of_a_stream_redacts_as_the_whole(
        text in texts(),
        pad in 0usize..700,
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let g = &*ALL_ON;
        let text = format!("{}{text}", "z ".repeat(pad / 2));
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(text.len() + 1)).collect();
        points.push(text.len());
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut at = 0;
        for p in points {
            let mut p = p;
            while !text.is_char_boundary(p) { p += 1; }
            if p >= at { pieces.push(&text[at..p]); at = p; }
        }
        let (whole, f) = redact_once(g, &text);
        let mut s = g.stream_text("k");
        let mut out = String::new();
        for piece in &pieces {
            out += &s.push(piece).unwrap();
        }
        out += &s.finish().unwrap();
        prop_assert_eq!(out, whole);
        prop_assert_eq!(s.findings(), &f);
    }
}
