# Content safety and tool destinations.
#
# Signalbox scans every string of the body a model or tool will see (prompts and history of every
# role, tool-call arguments, tool results, MCP arguments) and hands the policy what it found:
# input.content.findings is [{type, path, count}], never the values. This module decides what a
# finding means, from data.signalbox.content:
#   - block:  types that deny the request (403, reason content.<type>)
#   - redact: types masked in the body where the gateway can rewrite it (the native API,
#             LiteLLM); elsewhere `unredactable` says whether to let them pass or deny
# A body that could not be scanned in full (cut short by the gateway, or a string over
# content.max_string_bytes) is refused with 413: content we could not see does not pass.
#
# Tool calls that name URLs or hosts are checked too: input.destinations lists each one,
# resolved, with `private` and a `reason`; a call aimed at an internal address is denied.
package signalbox.authz

content_rules := data.signalbox.content

deny_reasons contains "content.truncated" if {
	input.content.truncated
}

# Doors that never forward the body (nginx auth_request, Caddy forward_auth) leave nothing to
# scan: input.door.body_forwarded is false and input.content.scanned is false. `unscanned` says
# what happens to such requests: "allow" (identity, route and model grants, rate limits still
# apply) or "deny" (403, for deployments where every prompt must be scanned: send LLM traffic
# through Envoy with with_request_body, the native API or LiteLLM instead).
deny_reasons contains "content.not_scanned" if {
	input.identity.verified
	input.door.body_forwarded == false
	content_rules.unscanned == "deny"
}

deny_reasons contains concat("", ["content.", finding.type]) if {
	input.identity.verified
	some finding in input.content.findings
	blocked_finding(finding.type)
}

deny_reasons contains "content.redaction_unsupported" if {
	input.identity.verified
	count(redact_types) > 0
	not input.door.can_rewrite_body
	content_rules.unredactable == "deny"
}

# SSRF: loopback, private, link-local, CGNAT, cloud metadata, unresolvable names...
deny_reasons contains concat("", ["destination.", destination.reason]) if {
	input.identity.verified
	some destination in input.destinations
	destination.private
}

blocked_finding(type) if {
	some pattern in content_rules.block
	pattern_matches(pattern, type)
}

redact_types contains finding.type if {
	some finding in input.content.findings
	not blocked_finding(finding.type)
	some pattern in content_rules.redact
	pattern_matches(pattern, finding.type)
}

# What the allow response asks for: masking, where the door can do it.
redaction["redact"] := {"types": sort([t | some t in redact_types])} if {
	count(redact_types) > 0
	input.door.can_rewrite_body
}
