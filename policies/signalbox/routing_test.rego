package signalbox.authz_test

import data.signalbox.authz

llm_chat(model, provider) := object.union(chat(model), {"llm": {"api": "openai.chat", "provider": provider, "model": model, "priced": true}})

test_routes_to_first_provider_with_fallbacks if {
	d := authz.decision with input as llm_chat("gpt-4o-mini", "openai")
	d.allowed
	d.route.provider == "openai"
	d.route.upstream == "api.openai.com:443"
	[f.provider | some f in d.route.fallbacks] == ["azure-openai"]
	not d.route.credential
}

test_names_credential_only_when_the_vault_holds_it if {
	req := object.union(llm_chat("gpt-4o-mini", "openai"), {"credentials": ["openai"]})
	d := authz.decision with input as req
	d.route.credential == "openai"
	not d.route.fallbacks[0].credential
}

test_skips_open_provider if {
	req := object.union(llm_chat("gpt-4o-mini", "openai"), {"providers": {"openai": {"provider": "openai", "state": "open"}}})
	d := authz.decision with input as req
	d.allowed
	d.route.provider == "azure-openai"
	d.route.fallbacks == []
}

test_half_open_provider_gets_its_trial if {
	req := object.union(llm_chat("gpt-4o-mini", "openai"), {"providers": {"openai": {"provider": "openai", "state": "half_open"}}})
	d := authz.decision with input as req
	d.route.provider == "openai"
}

test_every_provider_open_is_503 if {
	req := object.union(llm_chat("claude-3-5-haiku-20241022", "anthropic"), {"providers": {"anthropic": {"provider": "anthropic", "state": "open"}}})
	d := authz.decision with input as req
	not d.allowed
	d.http_status == 503
	d.reasons == ["route.no_healthy_provider"]
}

test_unlisted_model_goes_to_its_apis_provider if {
	req := object.union(llm_chat("o3-mini", "openai"), {"identity": user(["llm-power-user"])})
	d := authz.decision with input as req
	d.route.provider == "openai"
}

test_no_route_without_llm_facts if {
	d := authz.decision with input as chat("gpt-4o-mini")
	not d.route
}
