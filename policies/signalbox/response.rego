# Responses: what the model answered and what tools returned, where the gateway lets Signalbox
# see them (Envoy ext_proc). Signalbox scans the response with the same detectors as requests
# and evaluates this rule with the request's input as it was decided (identity, llm, ...) plus
# input.response:
#   {status, api, stream, content: {scanned, truncated, findings: [{type, path, count}]}}
# The same data.signalbox.content lists decide, so one list governs both directions:
#   - block:  types that stop the response. Buffered, the client gets this rule's error instead
#             of the answer; streamed, the stream ends with an error event before the value
#             leaves (what was sent before it stays sent).
#   - redact: types masked in the answer (every ext_proc response can be rewritten).
# MCP tools/list answers are filtered by the decision rule itself: a tool is offered only when a
# tools/call naming it would be allowed, so it is never offered and then refused.
package signalbox.authz

response_block_reasons contains concat("", ["content.", finding.type]) if {
	some finding in input.response.content.findings
	blocked_finding(finding.type)
}

response_redact_types contains finding.type if {
	some finding in input.response.content.findings
	not blocked_finding(finding.type)
	some pattern in content_rules.redact
	pattern_matches(pattern, finding.type)
}

# METADATA
# entrypoint: true
# description: What Signalbox does with a response it can see (Envoy ext_proc).
response := object.union(
	{"allowed": true, "reasons": ["allowed"]},
	{"redact": {"types": sort([t | some t in response_redact_types])} | count(response_redact_types) > 0},
) if {
	count(response_block_reasons) == 0
} else := {
	"allowed": false,
	"http_status": 403,
	"headers": {"content-type": "application/json"},
	"body": json.marshal({"error": {
		"code": sorted_response_reasons[0],
		"reasons": sorted_response_reasons,
		"message": "the answer carries content that may not be returned (secrets or sensitive personal data)",
	}}),
	"reasons": sorted_response_reasons,
}

sorted_response_reasons := sort([r | some r in response_block_reasons])
