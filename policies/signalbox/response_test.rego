package signalbox.authz_test

import data.signalbox.authz

answered(findings) := object.union(chat("gpt-4o-mini"), {"response": {
	"status": 200,
	"api": "openai.chat",
	"stream": false,
	"content": {"scanned": true, "truncated": false, "findings": findings},
}})

test_clean_answer_passes if {
	r := authz.response with input as answered([])
	r == {"allowed": true, "reasons": ["allowed"]}
}

test_card_number_in_the_answer_blocks if {
	r := authz.response with input as answered([{"type": "payment_card", "path": "$.choices[0].message.content", "count": 1}])
	not r.allowed
	r.http_status == 403
	r.reasons == ["content.payment_card"]
	json.unmarshal(r.body).error.code == "content.payment_card"
}

test_email_in_the_answer_is_redacted if {
	r := authz.response with input as answered([{"type": "email", "path": "$.choices[0].message.content", "count": 2}])
	r.allowed
	r.redact == {"types": ["email"]}
}

test_a_secret_blocks_even_beside_a_redactable_finding if {
	r := authz.response with input as answered([
		{"type": "email", "path": "$.content[0].text", "count": 1},
		{"type": "secret.aws_access_key", "path": "$.content[1].text", "count": 1},
	])
	not r.allowed
	r.reasons == ["content.secret.aws_access_key"]
}
