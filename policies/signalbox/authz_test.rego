package signalbox.authz_test

import data.signalbox.authz

# Input builders shared by every *_test.rego of this package.

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
