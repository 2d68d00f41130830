package agents_test

import data.agents

call(agent, tool, arguments) := {
	"identity": {"verified": true, "subject": "alice"},
	"actor": {"subject": agent},
	"session": {"id": "s1"},
	"parsed_body": {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": tool, "arguments": arguments}},
	"tool_calls": [{"name": tool, "source": "mcp", "arguments": arguments}],
	"content": {"scanned": true, "truncated": false, "findings": []},
}

test_granted_tool_allowed_with_loop_check if {
	d := agents.decision with input as call("research-agent", "web_search", {"query": "opa"})
	d.allowed
	d.loop.session == "session:alice/s1"
	d.headers["x-signalbox-actor"] == "research-agent"
}

test_tool_of_another_agent_denied if {
	d := agents.decision with input as call("support-bot", "read_file", {"path": "/etc/passwd"})
	d.reasons == ["tool.not_allowed"]
}

test_client_id_names_the_agent_without_act_claim if {
	doc := json.patch(call("support-bot", "lookup_order", {}), [{"op": "replace", "path": "/actor", "value": {"client_id": "support-bot"}}])
	d := agents.decision with input as doc
	d.allowed
}

test_unknown_agent_denied if {
	d := agents.decision with input as call("shadow-agent", "web_search", {})
	"agent.unknown" in d.reasons
}

test_private_destination_denied if {
	doc := object.union(call("research-agent", "fetch_url", {"url": "http://169.254.169.254/"}), {"destinations": [{"host": "169.254.169.254", "private": true, "reason": "metadata"}]})
	d := agents.decision with input as doc
	d.reasons == ["destination.metadata"]
}

test_secret_in_arguments_denied if {
	doc := object.union(call("research-agent", "web_search", {}), {"content": {"findings": [{"type": "secret.github_token", "path": "$.params.arguments.q", "count": 1}]}})
	d := agents.decision with input as doc
	d.reasons == ["content.secret.github_token"]
}

test_tool_call_without_session_denied if {
	doc := json.remove(call("research-agent", "web_search", {}), ["/session"])
	d := agents.decision with input as doc
	d.reasons == ["session.missing"]
}
