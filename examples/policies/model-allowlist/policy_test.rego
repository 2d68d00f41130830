package models_test

import data.models

caller(team) := {"verified": true, "subject": "alice", "team": team}

chat(team, model) := {"identity": caller(team), "parsed_body": {"model": model}}

test_team_model_allowed if {
	d := models.decision with input as chat("research", "gpt-4o")
	d.allowed
	d.headers["x-signalbox-team"] == "research"
	"authorization" in d.request_headers_to_remove
}

test_model_of_another_team_denied if {
	d := models.decision with input as chat("support", "gpt-4o")
	not d.allowed
	d.http_status == 403
	d.reasons == ["model.not_allowed"]
}

test_unknown_team_gets_nothing if {
	d := models.decision with input as chat("sales", "gpt-4o-mini")
	d.reasons == ["model.not_allowed"]
}

test_unverified_caller_gets_401 if {
	d := models.decision with input as {"identity": {"verified": false}, "parsed_body": {"model": "gpt-4o"}}
	d.http_status == 401
	d.reasons == ["identity.unverified"]
}

test_request_without_model_denied if {
	d := models.decision with input as {"identity": caller("research"), "parsed_body": {"messages": []}}
	d.reasons == ["model.missing"]
}

test_caller_without_team_claim_denied if {
	d := models.decision with input as {"identity": {"verified": true, "subject": "pat"}, "parsed_body": {"model": "gpt-4o-mini"}}
	d.reasons == ["model.not_allowed"]
}
