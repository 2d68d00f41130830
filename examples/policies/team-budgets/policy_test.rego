package team_budgets_test

import data.team_budgets

chat(model, spend) := {
	"identity": {"verified": true, "subject": "alice", "team": "research"},
	"llm": {"api": "openai.chat", "provider": "openai", "model": model, "priced": true, "estimated_cost_usd": 0.01},
	"spend": spend,
}

test_names_user_and_team_budgets if {
	d := team_budgets.decision with input as chat("gpt-4o", {})
	d.allowed
	{"scope": "user:alice", "window": "day", "limit_usd": 5} in d.budgets
	{"scope": "team:research", "window": "month", "limit_usd": 2000} in d.budgets
	not d.route
}

test_other_teams_get_the_default_cap if {
	doc := json.patch(chat("gpt-4o", {}), [{"op": "replace", "path": "/identity/team", "value": "sales"}])
	d := team_budgets.decision with input as doc
	{"scope": "team:sales", "window": "month", "limit_usd": 200} in d.budgets
}

test_downgrades_past_the_threshold if {
	d := team_budgets.decision with input as chat("gpt-4o", {"user:alice": {"day": {"spent_usd": 4.1, "held_usd": 0}}})
	d.allowed
	d.route.model == "gpt-4o-mini"
	"budget.downgraded" in d.reasons
}

test_no_downgrade_below_the_threshold if {
	d := team_budgets.decision with input as chat("gpt-4o", {"user:alice": {"day": {"spent_usd": 3.9, "held_usd": 0}}})
	not d.route
}

test_unpriced_model_denied if {
	doc := json.patch(chat("in-house-llm", {}), [{"op": "replace", "path": "/llm/priced", "value": false}])
	d := team_budgets.decision with input as doc
	d.reasons == ["budget.model_unpriced"]
}
