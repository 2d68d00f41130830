# Signalbox default policy: deny by default.
#
# A request is allowed only when the caller's token verified, one of their roles grants the
# route (method + path) they call, and every model and tool the request names is granted too.
# Grants are data (data.json), so operators change who may do what without touching Rego.
# On allow, the verified identity is handed upstream as x-signalbox-* headers and the inbound
# credential is removed; on deny, the caller gets a JSON error naming machine-readable reasons.
#
# Spend is capped per user, team, org and agent session, and rate-limited per user. The policy
# only names the budgets and limits (from data.signalbox.limits); Signalbox reserves the
# request's estimated cost against all of them at once and answers 429 when one has no room.
#
# Content safety and tool destinations are in content.rego, provider routing in routing.rego;
# they add to deny_reasons and to the allow response below.
package signalbox.authz

permissions := data.signalbox.permissions

limits := data.signalbox.limits

identity_headers_all := ["x-signalbox-user", "x-signalbox-team", "x-signalbox-tenant", "x-signalbox-roles", "x-signalbox-actor"]

# The headers gateways route on; Signalbox sets them from `route` and strips a caller's copy.
routing_headers_all := ["x-signalbox-provider", "x-signalbox-model", "x-signalbox-upstream", "x-signalbox-fallbacks"]

# METADATA
# entrypoint: true
# description: The decision Signalbox enforces for every request.
decision := allow_response if {
	count(deny_reasons) == 0
} else := deny_response

# ---------------------------------------------------------------------------------------------
# Why a request is denied. Every rule adds a machine-readable code; any code denies.

deny_reasons contains sprintf("identity.%s", [identity_error]) if {
	not input.identity.verified
}

deny_reasons contains "route.not_allowed" if {
	input.identity.verified
	not route_granted
}

deny_reasons contains "model.not_allowed" if {
	input.identity.verified
	some model in requested_models
	not granted("models", model)
}

deny_reasons contains "tool.not_allowed" if {
	input.identity.verified
	some tool in requested_tools
	not granted("tools", tool)
}

# A request whose cost cannot be estimated cannot be held against a budget.
deny_reasons contains "budget.model_unpriced" if {
	input.identity.verified
	input.llm
	not input.llm.priced
	count(budgets) > 0
}

# Past the economy threshold of any of the caller's budgets, only economy models may be used.
deny_reasons contains "budget.economy_only" if {
	input.identity.verified
	some model in requested_models
	not economy_model(model)
	some fraction in budget_used_fractions
	fraction >= limits.economy.threshold
}

identity_error := input.identity.error.code if input.identity.error.code

else := "unverified"

# ---------------------------------------------------------------------------------------------
# What the request asks for.

request_method := upper(input.attributes.request.http.method)

request_path := concat("/", ["", concat("/", input.parsed_path)])

# The routes (by name in data) this request matches.
matched_routes contains name if {
	some name, route in permissions.routes
	route.method == request_method
	route.path == request_path
}

requested_models contains model if {
	model := input.parsed_body.model
	is_string(model)
}

# OpenAI chat completions: tools[].function.name
requested_tools contains name if {
	some tool in input.parsed_body.tools
	name := tool.function.name
}

# OpenAI responses API and Anthropic messages: tools[].name
requested_tools contains name if {
	some tool in input.parsed_body.tools
	name := tool.name
}

# MCP tools/call: params.name
requested_tools contains name if {
	input.parsed_body.method == "tools/call"
	name := input.parsed_body.params.name
}

# ---------------------------------------------------------------------------------------------
# What the caller's roles grant. A grant is an exact name, "*", or a prefix ending in "*".

caller_roles contains role if {
	some role in input.identity.roles
	permissions.roles[role]
}

route_granted if {
	some route in matched_routes
	granted("routes", route)
}

granted(kind, value) if {
	some role in caller_roles
	some pattern in permissions.roles[role][kind]
	pattern_matches(pattern, value)
}

pattern_matches(pattern, value) if pattern == value

pattern_matches("*", _)

pattern_matches(pattern, value) if {
	endswith(pattern, "*")
	startswith(value, trim_suffix(pattern, "*"))
}

# ---------------------------------------------------------------------------------------------
# Budgets, rate limits and loop detection: what Signalbox reserves on allow.

user_scope := sprintf("user:%s", [input.identity.subject])

user_budgets_usd := limits.user_overrides_usd[user_scope] if {
	limits.user_overrides_usd[user_scope]
} else := limits.budgets_usd.user

budgets contains {"scope": user_scope, "window": window, "limit_usd": limit} if {
	input.identity.subject
	some window, limit in user_budgets_usd
}

budgets contains {"scope": sprintf("team:%s", [input.identity.team]), "window": window, "limit_usd": limit} if {
	input.identity.team
	some window, limit in limits.budgets_usd.team
}

budgets contains {"scope": sprintf("org:%s", [input.identity.tenant]), "window": window, "limit_usd": limit} if {
	input.identity.tenant
	some window, limit in limits.budgets_usd.org
}

# Sessions are named by the caller, so they are scoped to the verified user: another user
# naming the same session id cannot spend from it or poison its loop history.
session_scope := sprintf("session:%s/%s", [input.identity.subject, input.session.id]) if {
	input.identity.subject
	input.session.id
}

budgets contains {"scope": session_scope, "window": "session", "limit_usd": limits.budgets_usd.session} if session_scope

rate_limits contains object.union({"scope": user_scope}, limits.rate_limits.user) if input.identity.subject

# Agents identify their session (x-signalbox-session or mcp-session-id); their tool calls are
# checked for repeats and ping-pong within it.
loop_check := object.union({"session": session_scope}, limits.loop) if {
	session_scope
	count(object.get(input, "tool_calls", [])) > 0
}

# How much of each budget that applies is spent or held, from input.spend.
budget_used_fractions contains (view.spent_usd + view.held_usd) / budget.limit_usd if {
	some budget in budgets
	budget.limit_usd > 0
	view := input.spend[budget.scope][budget.window]
}

economy_model(model) if {
	some pattern in limits.economy.models
	pattern_matches(pattern, model)
}

enforcement["budgets"] := [b | some b in budgets] if count(budgets) > 0

enforcement["rate_limits"] := [r | some r in rate_limits] if count(rate_limits) > 0

enforcement["loop"] := loop_check

# ---------------------------------------------------------------------------------------------
# Responses.

identity_header_values := {name: value |
	some name, value in {
		"x-signalbox-user": input.identity.subject,
		"x-signalbox-team": object.get(input.identity, "team", null),
		"x-signalbox-tenant": object.get(input.identity, "tenant", null),
		"x-signalbox-roles": concat(",", sort([r | some r in caller_roles])),
		"x-signalbox-actor": object.get(object.get(input, "actor", {}), "subject", null),
	}
	is_string(value)
	value != ""
}

allow_response := object.union_n([enforcement, routed, redaction, {
	"allowed": true,
	"headers": identity_header_values,
	# Strip the caller's credential, any identity header we did not set ourselves, and the
	# routing headers (Signalbox re-sets those its route names), so the upstream and the
	# gateway's routes can trust x-signalbox-* to come from Signalbox.
	"request_headers_to_remove": array.concat(
		array.concat(["authorization"], [h | some h in identity_headers_all; not identity_header_values[h]]),
		routing_headers_all,
	),
	"reasons": ["allowed"],
}])

deny_status := 401 if {
	not input.identity.verified
} else := 413 if {
	"content.truncated" in deny_reasons
} else := 503 if {
	deny_reasons == {"route.no_healthy_provider"}
} else := 429 if {
	every reason in deny_reasons {
		reason == "budget.economy_only"
	}
} else := 403

deny_response := {
	"allowed": false,
	"http_status": deny_status,
	"headers": deny_headers,
	"body": json.marshal({"error": {
		"code": sorted_reasons[0],
		"reasons": sorted_reasons,
		"message": deny_message,
	}}),
	"reasons": sorted_reasons,
}

sorted_reasons := sort([r | some r in deny_reasons])

deny_headers := {"content-type": "application/json", "www-authenticate": `Bearer realm="signalbox", error="invalid_token"`} if {
	deny_status == 401
} else := {"content-type": "application/json"}

deny_message := "authentication required: present a valid bearer token" if {
	deny_status == 401
} else := "budget nearly spent: only economy models are allowed until it resets" if {
	deny_status == 429
} else := "the request body could not be inspected in full; send it whole" if {
	deny_status == 413
} else := "no provider for this model is available; retry shortly" if {
	deny_status == 503
} else := "the request cost cannot be estimated for the budgets that apply" if {
	sorted_reasons == ["budget.model_unpriced"]
} else := "this gateway does not forward request bodies, and the policy requires every request body to be scanned" if {
	sorted_reasons == ["content.not_scanned"]
} else := "the request carries content that may not be sent (secrets or sensitive personal data)" if {
	every reason in sorted_reasons {
		startswith(reason, "content.")
	}
} else := "a tool call targets an internal or unresolvable address" if {
	every reason in sorted_reasons {
		startswith(reason, "destination.")
	}
} else := "the caller's roles do not grant this request"
