package signalbox.authz_test

import data.signalbox.authz

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

test_identity_provider_outage_is_503_not_401 if {
	d := authz.decision with input as object.union(chat("gpt-4o-mini"), {"identity": {"verified": false, "error": {"code": "jwks_unavailable"}}})
	not d.allowed
	d.http_status == 503
	d.reasons == ["identity.provider_unavailable"]
	not d.headers["www-authenticate"]
	body := json.unmarshal(d.body)
	body.error.code == "identity.provider_unavailable"
	contains(body.error.message, "retry")
}
