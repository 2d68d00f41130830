# RBAC on a header only: the peer benchmark's smallest policy, run unchanged by both engines
# (opa-envoy-plugin, and Signalbox with policy.decision: envoy/authz/allow).
#
# No token: the caller's role is the x-bench-role request header, and the route (method + path)
# must be granted to that role by the same grants Signalbox's default policy reads
# (data.signalbox.permissions, copied from policies/signalbox/data.json). A grant is an exact
# route name, "*", or a prefix ending in "*". The body is not read. Decision path:
# envoy/authz/allow.
package envoy.authz

import rego.v1

permissions := data.signalbox.permissions

default allow := false

allow if {
	some route in matched_routes
	some pattern in permissions.roles[input.attributes.request.http.headers["x-bench-role"]].routes
	pattern_matches(pattern, route)
}

request_path := concat("/", ["", concat("/", input.parsed_path)])

matched_routes contains name if {
	some name, route in permissions.routes
	route.method == upper(input.attributes.request.http.method)
	route.path == request_path
}

pattern_matches(pattern, value) if pattern == value

pattern_matches("*", _)

pattern_matches(pattern, value) if {
	endswith(pattern, "*")
	startswith(value, trim_suffix(pattern, "*"))
}
