package signalbox.authz_test

import data.signalbox.authz

user(roles) := {"verified": true, "subject": "alice", "team": "search", "tenant": "acme", "roles": roles}

request(method, path, body) := {
	"attributes": {"request": {"http": {"method": method, "path": path}}},
	"parsed_path": split(trim_prefix(path, "/"), "/"),
	"parsed_body": body,
	"identity": user(["llm-user"]),
}

chat(model) := request("POST", "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "hi"}]})

test_allows_granted_route_and_model if {
	d := authz.decision with input as chat("gpt-4o-mini")
	d.allowed
	d.headers["x-signalbox-user"] == "alice"
	d.headers["x-signalbox-team"] == "search"
	d.headers["x-signalbox-roles"] == "llm-user"
	"authorization" in d.request_headers_to_remove
}

test_removes_identity_headers_it_does_not_set if {
	d := authz.decision with input as chat("gpt-4o-mini")
	"x-signalbox-actor" in d.request_headers_to_remove
	not "x-signalbox-user" in d.request_headers_to_remove
}

test_denies_missing_token_with_401 if {
	d := authz.decision with input as object.union(chat("gpt-4o-mini"), {"identity": {"verified": false, "error": {"code": "token_missing"}}})
	not d.allowed
	d.http_status == 401
	d.reasons == ["identity.token_missing"]
	startswith(d.headers["www-authenticate"], "Bearer")
	json.unmarshal(d.body).error.code == "identity.token_missing"
}

test_denies_empty_input if {
	d := authz.decision with input as {}
	not d.allowed
	d.http_status == 401
}

test_denies_model_outside_role if {
	d := authz.decision with input as chat("gpt-4o")
	not d.allowed
	d.http_status == 403
	d.reasons == ["model.not_allowed"]
}

test_prefix_grant_matches if {
	d := authz.decision with input as chat("claude-3-5-haiku-20241022")
	d.allowed
}

test_denies_route_outside_role if {
	d := authz.decision with input as request("POST", "/mcp", {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "web_search"}})
	d.reasons == ["route.not_allowed"]
}

test_denies_unknown_route if {
	d := authz.decision with input as request("DELETE", "/v1/chat/completions", {})
	d.reasons == ["route.not_allowed"]
}

test_denies_tool_not_granted if {
	body := {"model": "gpt-4o-mini", "tools": [{"type": "function", "function": {"name": "delete_repo"}}]}
	d := authz.decision with input as request("POST", "/v1/chat/completions", body)
	d.reasons == ["tool.not_allowed"]
}

test_allows_granted_tool if {
	body := {"model": "gpt-4o-mini", "tools": [{"type": "function", "function": {"name": "web_search"}}]}
	d := authz.decision with input as request("POST", "/v1/chat/completions", body)
	d.allowed
}

test_mcp_tool_call_checked_against_agent_grants if {
	body := {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "shell"}}
	agent := object.union(request("POST", "/mcp", body), {"identity": user(["agent"])})
	d := authz.decision with input as agent
	d.reasons == ["tool.not_allowed"]
}

test_unknown_role_grants_nothing if {
	d := authz.decision with input as object.union(chat("gpt-4o-mini"), {"identity": user(["root"])})
	d.reasons == ["model.not_allowed", "route.not_allowed"]
}

test_several_reasons_are_all_reported if {
	body := {"model": "gpt-5-pro", "tools": [{"name": "shell"}]}
	d := authz.decision with input as request("POST", "/v1/messages", body)
	d.reasons == ["model.not_allowed", "tool.not_allowed"]
}

test_admin_allowed_everything if {
	input_doc := object.union(request("POST", "/mcp", {"method": "tools/call", "params": {"name": "shell"}}), {"identity": user(["admin"])})
	d := authz.decision with input as input_doc
	d.allowed
}

# ---------------------------------------------------------------------------------------------
# Budgets, rate limits, loop detection.

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
