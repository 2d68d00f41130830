# Routing: which provider serves an LLM request, with failover.
#
# data.signalbox.routing.models is an ordered list of {match, targets}: the first rule whose
# pattern matches the requested model gives the providers to try, in order. A model no rule
# matches goes to the provider its API implies (input.llm.provider). Each target is completed
# from data.signalbox.routing.providers (upstream, credential).
#
# input.providers is the circuit breaker per provider, fed by the gateways' usage reports and
# shared by every replica through the store: an open provider is skipped and the next target
# taken; a half-open one gets traffic again (its trial). When every target is open the request
# is refused with 503 rather than sent to a provider known to be down.
#
# The credential is the name of a vault entry. It is only named when the vault holds it
# (input.credentials); Signalbox then sets the provider's key header and strips the caller's.
package signalbox.authz

routing := data.signalbox.routing

model_rule_indexes contains i if {
	some i, rule in routing.models
	pattern_matches(rule.match, input.llm.model)
}

route_targets := routing.models[min(model_rule_indexes)].targets if {
	count(model_rule_indexes) > 0
} else := [{"provider": input.llm.provider}] if {
	input.llm.provider
}

provider_available(provider) if not input.providers[provider].state == "open"

available_targets := [completed_target(t) | some t in route_targets; provider_available(t.provider)]

completed_target(target) := object.union(target_fields(target), {"credential": name}) if {
	name := object.union(object.get(routing.providers, target.provider, {}), target).credential
	name in object.get(input, "credentials", [])
} else := target_fields(target)

target_fields(target) := {key: value |
	some key, value in object.union(object.get(routing.providers, target.provider, {}), target)
	key in {"provider", "model", "upstream"}
}

deny_reasons contains "route.no_healthy_provider" if {
	input.identity.verified
	input.llm
	count(route_targets) > 0
	count(available_targets) == 0
}

routed["route"] := object.union(available_targets[0], {"fallbacks": array.slice(available_targets, 1, count(available_targets))}) if {
	input.llm
	count(available_targets) > 0
}
