# Agents and their tools: an agent acting for a user may call only the tools it is granted,
# never with secrets in the arguments, never against an internal address, and never in a loop.
#
# The agent is the `act` claim of the user's token (RFC 8693 delegation) or the OAuth client id
# (`azp`): input.actor.subject / input.actor.client_id. Tool calls come from MCP `tools/call`
# and from the tool calls of a chat turn alike (input.tool_calls). Grants are in data.json.
#
#   signalbox build --src examples/policies/agent-tools --out bundles/agents.tar.gz
#   policy.decision: agents/decision
package agents

# METADATA
# entrypoint: true
# description: Allow an agent's tool calls that its grants allow, with loop detection.
decision := {
	"allowed": true,
	"headers": upstream_headers,
	"request_headers_to_remove": headers_to_remove,
	"reasons": ["allowed"],
	# Signalbox keeps the session's call history: the same call repeated, or two calls bouncing
	# back and forth, is denied with 429 before it runs again.
	"loop": {"session": session_scope, "max_repeats": 3, "ping_pong": 2, "window": 20},
	"rate_limits": [{"scope": session_scope, "requests_per_minute": data.agents.session_requests_per_minute}],
} if {
	count(deny) == 0
} else := {
	"allowed": false,
	"http_status": status,
	"headers": {"content-type": "application/json"},
	"body": json.marshal({"error": {"code": reasons[0], "reasons": reasons}}),
	"reasons": reasons,
}

reasons := sort([r | some r in deny])

status := 401 if {
	not input.identity.verified
} else := 403

# The agent acting for the user: the delegated subject, else the OAuth client.
agent := input.actor.subject if input.actor.subject

else := input.actor.client_id

# Sessions are named by the caller; scope them to the user so no one spends another's.
session_scope := sprintf("session:%s/%s", [input.identity.subject, object.get(input, ["session", "id"], "none")])

deny contains "identity.unverified" if not input.identity.verified

deny contains "agent.unknown" if {
	input.identity.verified
	not data.agents.grants[agent]
}

deny contains "tool.not_allowed" if {
	input.identity.verified
	some call in object.get(input, "tool_calls", [])
	not call.name in object.get(data.agents.grants, [agent, "tools"], [])
}

deny contains "session.missing" if {
	input.identity.verified
	count(object.get(input, "tool_calls", [])) > 0
	not input.session.id
}

# Secrets in what the model or tool will see: arguments, results and prompts alike.
deny contains sprintf("content.%s", [finding.type]) if {
	some finding in input.content.findings
	startswith(finding.type, "secret.")
}

# A call aimed at loopback, a private network, cloud metadata, or a name that does not resolve.
deny contains sprintf("destination.%s", [d.reason]) if {
	some d in input.destinations
	d.private
}

# What the upstream learns about the caller, from verified claims only.
upstream_headers := {"x-signalbox-user": input.identity.subject, "x-signalbox-actor": agent}

# Upstreams trust x-signalbox-* headers to come from Signalbox: remove the caller's token and any
# copy of those headers this policy does not set itself (Envoy, Kong and the native API pass
# request headers through unless told to remove them).
signalbox_headers := {
	"x-signalbox-user", "x-signalbox-team", "x-signalbox-tenant", "x-signalbox-roles", "x-signalbox-actor",
	"x-signalbox-provider", "x-signalbox-model", "x-signalbox-upstream", "x-signalbox-fallbacks",
}

headers_to_remove := array.concat(["authorization"], sort([h | some h in signalbox_headers; not upstream_headers[h]]))
