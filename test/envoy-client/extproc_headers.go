package main

// Header maps and the mutation rules Envoy 1.40's ext_proc filter applies to them
// (source/extensions/filters/http/ext_proc/mutation_utils.cc and
// source/extensions/filters/common/mutation_rules/mutation_rules.cc, with the filter's default,
// unconfigured HeaderMutationRules), so a test sees exactly which of a processor's mutations
// Envoy would honour, ignore, or turn into a local reply.

import (
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// headerEntry is one header line; keys are kept lower-case, as in Envoy's header maps.
type headerEntry struct {
	key   string
	value string
}

// headerMap is an ordered multi-map, like Envoy's HeaderMapImpl.
type headerMap []headerEntry

func (h headerMap) get(key string) []string {
	var values []string
	for _, e := range h {
		if e.key == key {
			values = append(values, e.value)
		}
	}
	return values
}

func (h headerMap) first(key string) (string, bool) {
	for _, e := range h {
		if e.key == key {
			return e.value, true
		}
	}
	return "", false
}

func (h *headerMap) add(key, value string) { *h = append(*h, headerEntry{key, value}) }

// set replaces every value of key with one value, keeping the first one's position (setCopy).
func (h *headerMap) set(key, value string) {
	out := make(headerMap, 0, len(*h)+1)
	done := false
	for _, e := range *h {
		if e.key != key {
			out = append(out, e)
		} else if !done {
			out = append(out, headerEntry{key, value})
			done = true
		}
	}
	if !done {
		out = append(out, headerEntry{key, value})
	}
	*h = out
}

func (h *headerMap) remove(key string) {
	out := (*h)[:0]
	for _, e := range *h {
		if e.key != key {
			out = append(out, e)
		}
	}
	*h = out
}

// toProto encodes the map as Envoy 1.40 sends it: values in raw_value
// (envoy.reloadable_features.send_header_raw_value defaults to true).
func (h headerMap) toProto() *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for _, e := range h {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: e.key, RawValue: []byte(e.value)})
	}
	return m
}

// toJSON groups values by name for the output; pseudo-headers are left out (status, method and
// path are reported on their own).
func (h headerMap) toJSON() map[string][]string {
	out := map[string][]string{}
	for _, e := range h {
		if !strings.HasPrefix(e.key, ":") {
			out[e.key] = append(out[e.key], e.value)
		}
	}
	return out
}

// mutationRules is the subset of HeaderMutationRules Envoy's checker consults. The filter's
// checker uses the zero value (no mutation_rules configured); an immediate response's headers
// use allowAllRouting and allowEnvoy (ImmediateMutationChecker in ext_proc.cc).
type mutationRules struct {
	allowAllRouting bool
	allowEnvoy      bool
}

// extraRoutingHeaders may not be set or removed unless allow_all_routing is on.
var extraRoutingHeaders = map[string]bool{"host": true, ":authority": true, ":method": true, ":scheme": true}

type checkOp int

const (
	opSet checkOp = iota
	opAppend
	opRemove
)

// allowed mirrors Checker::check for the default rules (no allow/disallow expression,
// disallow_is_error false: a disallowed mutation is ignored, not an error).
func (r mutationRules) allowed(op checkOp, name, value string) bool {
	if op == opRemove && (strings.HasPrefix(name, ":") || name == "host") {
		return false
	}
	if !r.allowAllRouting && extraRoutingHeaders[name] {
		return false
	}
	if strings.HasPrefix(name, ":") && op == opAppend {
		return false
	}
	if !r.allowEnvoy && strings.HasPrefix(name, "x-envoy") {
		return false
	}
	if op == opRemove {
		return true
	}
	return validValueFor(name, value)
}

// validValueFor is Checker::isValidValue.
func validValueFor(name, value string) bool {
	if !strings.HasPrefix(name, ":") && !headerValueIsValid(value) {
		return false
	}
	switch name {
	case "host", ":authority":
		return value != "" && !strings.ContainsAny(value, " /?#@\t")
	case ":scheme":
		return value == "http" || value == "https"
	case ":status":
		code, err := strconv.Atoi(value)
		return err == nil && code >= 200
	}
	return true
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// headerNameIsValid is HeaderUtility::headerNameIsValid: HTTP/2 rules (lower-case token) for
// pseudo-headers, HTTP/1 token rules (upper case allowed) for the rest.
func headerNameIsValid(name string) bool {
	rest := name
	pseudo := strings.HasPrefix(name, ":")
	if pseudo {
		rest = name[1:]
	}
	if rest == "" {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !isTchar(c) || (pseudo && c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// headerValueIsValid is HeaderUtility::headerValueIsValid: no NUL, CR or LF.
func headerValueIsValid(value string) bool { return !strings.ContainsAny(value, "\x00\r\n") }

// mutationError is an error Envoy answers with a local reply (status_on_error, 500 by default)
// carrying the message as response details.
type mutationError struct{ message string }

func (e *mutationError) Error() string { return e.message }

// applyHeaderMutation is MutationUtils::applyHeaderMutations. replacing is CONTINUE_AND_REPLACE
// (which may change :method); skipContentLength drops content-length sets in the body modes where
// Envoy removed it. Ignored mutations are appended to ignored; an error means a local reply.
func applyHeaderMutation(m *extprocv3.HeaderMutation, headers *headerMap, rules mutationRules, replacing, skipContentLength bool, ignored *[]string) error {
	const maxHeadersCount = 100 // the HTTP connection manager's default max_headers_count
	if len(m.GetRemoveHeaders()) > maxHeadersCount || len(m.GetSetHeaders()) > maxHeadersCount {
		return &mutationError{fmt.Sprintf("Header mutation remove header count %d or set header count %d exceed the HCM header countlimit %d", len(m.GetRemoveHeaders()), len(m.GetSetHeaders()), maxHeadersCount)}
	}
	for _, name := range m.GetRemoveHeaders() {
		if !headerNameIsValid(name) {
			return &mutationError{"Invalid character in remove_headers mutation."}
		}
		lower := strings.ToLower(name)
		if !rules.allowed(opRemove, lower, "") {
			*ignored = append(*ignored, "remove "+lower)
			continue
		}
		headers.remove(lower)
	}
	for _, option := range m.GetSetHeaders() {
		header := option.GetHeader()
		if header == nil {
			continue
		}
		if skipContentLength && strings.EqualFold(header.GetKey(), "content-length") {
			continue
		}
		if header.GetValue() != "" && len(header.GetRawValue()) > 0 {
			return &mutationError{"Only one of value or raw_value in the HeaderValue message should be set."}
		}
		// Envoy 1.40 reads raw_value (send_header_raw_value defaults to true): a value sent in
		// `value` alone sets the header to the empty string. Recorded so a test can catch it.
		value := string(header.GetRawValue())
		if header.GetValue() != "" {
			*ignored = append(*ignored, "value-not-raw_value "+strings.ToLower(header.GetKey()))
		}
		if !headerNameIsValid(header.GetKey()) || !headerValueIsValid(value) {
			return &mutationError{"Invalid character in set_headers mutation."}
		}
		name := strings.ToLower(header.GetKey())
		// The deprecated `append` BoolValue defaults to false here; append_action is not read.
		appendValue := option.GetAppend().GetValue()
		op := opSet
		if appendValue && len(headers.get(name)) > 0 {
			op = opAppend
		}
		ok := rules.allowed(op, name, value)
		if replacing && name == ":method" {
			ok = true
		}
		if !ok {
			*ignored = append(*ignored, "set "+name)
			continue
		}
		if appendValue {
			headers.add(name, value)
		} else {
			headers.set(name, value)
		}
	}
	return nil
}

// applyBodyMutation is MutationUtils::applyBodyMutations for the non-streamed mutations.
func applyBodyMutation(m *extprocv3.BodyMutation, body []byte) []byte {
	switch mutation := m.GetMutation().(type) {
	case *extprocv3.BodyMutation_ClearBody:
		if mutation.ClearBody {
			return []byte{}
		}
	case *extprocv3.BodyMutation_Body:
		return append([]byte{}, mutation.Body...)
	}
	return body
}
