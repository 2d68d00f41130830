# Budgets, rate limits and loop detection: what Signalbox reserves on allow.
#
# Spend is capped per user, team, org and agent session, and rate-limited per user. The policy
# only names the budgets and limits (from data.signalbox.limits); Signalbox reserves the
# request's estimated cost against all of them at once, before the request runs, and answers 429
# when one has no room. input.spend shows what is already spent and held, so the policy can
# steer a caller near a cap to cheaper models.
package signalbox.authz

limits := data.signalbox.limits

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

# concat, not sprintf: compiled to WebAssembly, sprintf is a call out to the host (its arguments
# and result serialised each way), concat runs inside the module. The parts are strings here.
user_scope := concat("", ["user:", input.identity.subject])

user_budgets_usd := limits.user_overrides_usd[user_scope] if {
	limits.user_overrides_usd[user_scope]
} else := limits.budgets_usd.user

budgets contains {"scope": user_scope, "window": window, "limit_usd": limit} if {
	input.identity.subject
	some window, limit in user_budgets_usd
}

budgets contains {"scope": concat("", ["team:", input.identity.team]), "window": window, "limit_usd": limit} if {
	input.identity.team
	some window, limit in limits.budgets_usd.team
}

budgets contains {"scope": concat("", ["org:", input.identity.tenant]), "window": window, "limit_usd": limit} if {
	input.identity.tenant
	some window, limit in limits.budgets_usd.org
}

# Sessions are named by the caller, so they are scoped to the verified user: another user
# naming the same session id cannot spend from it or poison its loop history.
session_scope := concat("", ["session:", input.identity.subject, "/", input.session.id]) if {
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

# Sorted: a set becomes an array in engine order (sorted under OPA, not under WASM); sorting makes
# the result the same under both.
enforcement["budgets"] := sort([b | some b in budgets]) if count(budgets) > 0

enforcement["rate_limits"] := sort([r | some r in rate_limits]) if count(rate_limits) > 0

enforcement["loop"] := loop_check
