package signalbox.authz_test

import data.signalbox.authz

with_content(findings) := object.union(chat("gpt-4o-mini"), {"content": {"scanned": true, "truncated": false, "findings": findings}})

at_door(req, can_rewrite) := object.union(req, {"door": {"name": "test", "can_rewrite_body": can_rewrite}})

test_secret_in_tool_arguments_denies if {
	req := with_content([{"type": "secret.aws_access_key", "path": "$.messages[2].tool_calls[0].function.arguments<json>.key", "count": 1}])
	d := authz.decision with input as req
	not d.allowed
	d.http_status == 403
	d.reasons == ["content.secret.aws_access_key"]
	json.unmarshal(d.body).error.message == "the request carries content that may not be sent (secrets or sensitive personal data)"
}

test_payment_card_and_ssn_deny if {
	req := with_content([{"type": "payment_card", "path": "$.messages[0].content", "count": 1}, {"type": "us_ssn", "path": "$.messages[0].content", "count": 2}])
	d := authz.decision with input as req
	d.reasons == ["content.payment_card", "content.us_ssn"]
}

test_email_is_redacted_where_the_door_can_rewrite if {
	req := at_door(with_content([{"type": "email", "path": "$.messages[0].content", "count": 1}, {"type": "phone", "path": "$.messages[1].content", "count": 1}]), true)
	d := authz.decision with input as req
	d.allowed
	d.redact == {"types": ["email", "phone"]}
}

test_email_passes_unmasked_where_the_door_cannot_rewrite if {
	req := at_door(with_content([{"type": "email", "path": "$.messages[0].content", "count": 1}]), false)
	d := authz.decision with input as req
	d.allowed
	not d.redact
}

test_unredactable_deny_setting if {
	req := at_door(with_content([{"type": "email", "path": "$.messages[0].content", "count": 1}]), false)
	d := authz.decision with input as req with data.signalbox.content.unredactable as "deny"
	d.reasons == ["content.redaction_unsupported"]
}

test_truncated_body_is_413 if {
	req := object.union(chat("gpt-4o-mini"), {"content": {"scanned": false, "truncated": true, "findings": []}})
	d := authz.decision with input as req
	not d.allowed
	d.http_status == 413
	d.reasons == ["content.truncated"]
}

# nginx auth_request and Caddy forward_auth never forward the body: no model, no findings.
bodiless(door) := object.union(request("POST", "/v1/chat/completions", null), {
	"door": {"name": door, "can_rewrite_body": false, "body_forwarded": false},
	"content": {"scanned": false, "truncated": false, "findings": []},
})

test_bodiless_door_allows_llm_call_by_default if {
	d := authz.decision with input as bodiless("nginx.auth_request")
	d.allowed
	d.headers["x-signalbox-user"] == "alice"
	"authorization" in d.request_headers_to_remove
	not d.route
}

test_bodiless_door_still_checks_routes if {
	d := authz.decision with input as object.union(bodiless("caddy.forward_auth"), {"attributes": {"request": {"http": {"method": "DELETE"}}}})
	d.reasons == ["route.not_allowed"]
}

test_unscanned_deny_setting if {
	d := authz.decision with input as bodiless("caddy.forward_auth") with data.signalbox.content.unscanned as "deny"
	not d.allowed
	d.http_status == 403
	d.reasons == ["content.not_scanned"]
	json.unmarshal(d.body).error.message == "this gateway does not forward request bodies, and the policy requires every request body to be scanned"
}

test_unscanned_deny_setting_leaves_doors_with_bodies_alone if {
	d := authz.decision with input as at_door(with_content([]), false) with data.signalbox.content.unscanned as "deny"
	d.allowed
}

test_no_findings_allows_without_redact if {
	d := authz.decision with input as with_content([])
	d.allowed
	not d.redact
}

mcp_fetch(destinations) := object.union(
	request("POST", "/mcp", {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "fetch_url"}}),
	{"identity": user(["agent"]), "destinations": destinations},
)

test_internal_destination_denies if {
	d := authz.decision with input as mcp_fetch([{"path": "$.tool_calls[0].arguments.url", "host": "169.254.169.254", "private": true, "reason": "metadata"}])
	not d.allowed
	d.http_status == 403
	d.reasons == ["destination.metadata"]
}

test_public_destination_allows if {
	d := authz.decision with input as mcp_fetch([{"path": "$.tool_calls[0].arguments.url", "host": "example.com", "private": false, "reason": null}])
	d.allowed
}
