# Spend caps per team and per user, with a cheaper model once a budget is nearly spent.
#
# The policy names the budgets; Signalbox reserves each request's estimated cost against all of
# them at once, before the request runs, and answers 429 when one has no room (exact under
# concurrency and across replicas). input.spend shows what is spent and held so far, so past
# data.budgets.downgrade.threshold of any budget the request is routed to the economy model
# instead (the native API and LiteLLM rewrite the body; Envoy gets x-signalbox-model).
#
#   signalbox build --src examples/policies/team-budgets --out bundles/budgets.tar.gz
#   policy.decision: team_budgets/decision
package team_budgets

# METADATA
# entrypoint: true
# description: Allow priced LLM calls within the caller's team and user budgets.
decision := object.union(
	{
		"allowed": true,
		"headers": upstream_headers,
		"request_headers_to_remove": headers_to_remove,
		"reasons": ["allowed"],
		"budgets": [b | some b in budgets],
		"rate_limits": [{"scope": user_scope, "requests_per_minute": data.budgets.user_requests_per_minute}],
	},
	downgrade,
) if {
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

user_scope := sprintf("user:%s", [input.identity.subject])

team_scope := sprintf("team:%s", [input.identity.team])

budgets contains {"scope": user_scope, "window": window, "limit_usd": limit} if {
	some window, limit in data.budgets.user_usd
}

budgets contains {"scope": team_scope, "window": window, "limit_usd": limit} if {
	input.identity.team
	some window, limit in object.get(data.budgets.team_usd, input.identity.team, data.budgets.team_usd["*"])
}

deny contains "identity.unverified" if not input.identity.verified

deny contains "team.missing" if {
	input.identity.verified
	not input.identity.team
}

# A model with no price cannot be held against a budget.
deny contains "budget.model_unpriced" if {
	input.identity.verified
	not input.llm.priced
}

# The share of each budget already spent or held (input.spend[scope][window]).
used_fraction contains (view.spent_usd + view.held_usd) / b.limit_usd if {
	some b in budgets
	b.limit_usd > 0
	view := input.spend[b.scope][b.window]
}

nearly_spent if {
	some fraction in used_fraction
	fraction >= data.budgets.downgrade.threshold
}

downgrade := {"route": {"provider": input.llm.provider, "model": data.budgets.downgrade.model}, "reasons": ["allowed", "budget.downgraded"]} if {
	nearly_spent
	input.llm.model != data.budgets.downgrade.model
} else := {}

# What the upstream learns about the caller, from verified claims only.
upstream_headers := {"x-signalbox-user": input.identity.subject}

# Upstreams trust x-signalbox-* headers to come from Signalbox: remove the caller's token and any
# copy of those headers this policy does not set itself (Envoy, Kong and the native API pass
# request headers through unless told to remove them).
signalbox_headers := {
	"x-signalbox-user", "x-signalbox-team", "x-signalbox-tenant", "x-signalbox-roles", "x-signalbox-actor",
	"x-signalbox-provider", "x-signalbox-model", "x-signalbox-upstream", "x-signalbox-fallbacks",
}

headers_to_remove := array.concat(["authorization"], sort([h | some h in signalbox_headers; not upstream_headers[h]]))
