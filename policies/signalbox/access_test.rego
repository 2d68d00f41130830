package signalbox.authz_test

import data.signalbox.authz

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
