package signalbox.authz_test

import data.signalbox.authz

priced_chat(model) := object.union(chat(model), {"llm": {"model": model, "priced": true, "estimated_cost_usd": 0.01}})

test_allow_names_the_callers_budgets if {
	d := authz.decision with input as priced_chat("gpt-4o-mini")
	d.allowed
	{"scope": "user:alice", "window": "day", "limit_usd": 5} in d.budgets
	{"scope": "user:alice", "window": "month", "limit_usd": 50} in d.budgets
	{"scope": "team:search", "window": "month", "limit_usd": 500} in d.budgets
	{"scope": "org:acme", "window": "month", "limit_usd": 5000} in d.budgets
	count(d.budgets) == 4
	d.rate_limits == [{"scope": "user:alice", "requests_per_minute": 60, "tokens_per_minute": 200000}]
	not d.loop
}

test_user_override_replaces_default_budgets if {
	bot := object.union(priced_chat("gpt-4o-mini"), {"identity": {"subject": "ci-bot"}})
	d := authz.decision with input as bot
	{"scope": "user:ci-bot", "window": "day", "limit_usd": 1} in d.budgets
	not {"scope": "user:ci-bot", "window": "day", "limit_usd": 5} in d.budgets
}

test_session_budget_and_loop_check_for_agents if {
	agent := object.union(priced_chat("gpt-4o-mini"), {"session": {"id": "s-42"}, "tool_calls": [{"name": "web_search", "source": "openai.chat"}]})
	d := authz.decision with input as agent
	{"scope": "session:alice/s-42", "window": "session", "limit_usd": 2} in d.budgets
	d.loop == {"session": "session:alice/s-42", "max_repeats": 3, "ping_pong": 2, "window": 20}
}

test_no_loop_check_without_tool_calls if {
	d := authz.decision with input as object.union(priced_chat("gpt-4o-mini"), {"session": {"id": "s-42"}})
	not d.loop
}

test_denies_unpriced_model_when_budgets_apply if {
	unpriced := object.union(chat("gpt-4o-mini"), {"llm": {"model": "gpt-4o-mini", "priced": false}})
	d := authz.decision with input as unpriced
	not d.allowed
	d.reasons == ["budget.model_unpriced"]
	d.http_status == 403
}

spend(spent) := {"user:alice": {"day": {"spent_usd": spent, "held_usd": 0.5}}}

test_past_economy_threshold_only_economy_models if {
	power := object.union(priced_chat("gpt-4o"), {"identity": {"roles": ["llm-power-user"]}, "spend": spend(3.6)})
	d := authz.decision with input as power
	not d.allowed
	d.http_status == 429
	d.reasons == ["budget.economy_only"]
	cheap := object.union(priced_chat("gpt-4o-mini"), {"spend": spend(3.6)})
	authz.decision.allowed with input as cheap
}

test_below_economy_threshold_any_granted_model if {
	power := object.union(priced_chat("gpt-4o"), {"identity": {"roles": ["llm-power-user"]}, "spend": spend(3.4)})
	authz.decision.allowed with input as power
}
