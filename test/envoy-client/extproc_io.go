package main

// The ext-proc mode's input and output documents (JSON on stdin and stdout). See extproc.go for
// the behaviour and README-style docs in the package comment of main.go.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// extProcInput is one downstream request through one ext_proc filter.
type extProcInput struct {
	// Addr is the external processor's gRPC address (Signalbox), host:port.
	Addr string `json:"addr"`
	// ProcessingMode is the filter's processing_mode in protojson
	// (envoy.extensions.filters.http.ext_proc.v3.ProcessingMode, e.g. {"requestBodyMode": "BUFFERED"}).
	ProcessingMode json.RawMessage `json:"processing_mode"`
	// AllowModeOverride is the filter's allow_mode_override.
	AllowModeOverride bool `json:"allow_mode_override"`
	// MessageTimeout is the filter's message_timeout as a Go duration ("200ms", Envoy's default).
	MessageTimeout string `json:"message_timeout"`
	// MaxMessageTimeout is the filter's max_message_timeout; empty disables override_message_timeout.
	MaxMessageTimeout string `json:"max_message_timeout"`
	// Request is what the downstream client sends.
	Request extProcRequest `json:"request"`
	// Upstream is the base URL of the real HTTP server the router forwards to ("http://127.0.0.1:PORT").
	Upstream string `json:"upstream"`
	// AbortAfterResponseChunks > 0 makes the downstream client go away after that many response body
	// chunks reached it: the filter is destroyed and closes the stream, as Envoy does on a reset.
	AbortAfterResponseChunks int `json:"abort_after_response_chunks"`
}

type extProcRequest struct {
	Method    string            `json:"method"`
	Path      string            `json:"path"`
	Authority string            `json:"authority"`
	Headers   map[string]string `json:"headers"`
	// Body is the whole request body; BodyChunks splits it into data frames instead (use one).
	Body       string   `json:"body"`
	BodyChunks []string `json:"body_chunks"`
	// BodyArrival says when the data frames reach Envoy: "with_headers" (default; a small request
	// body arrives before the processor answers the headers, so Envoy sends it as one message in
	// every body mode) or "after_headers_response" (each frame arrives after the headers response,
	// so STREAMED sends one message per frame).
	BodyArrival string `json:"body_arrival"`
}

// extProcOutput is what happened, from the downstream client's, the upstream's and the wire's view.
type extProcOutput struct {
	Client   clientView    `json:"client"`
	Upstream *upstreamView `json:"upstream"`
	// ImmediateResponse is set when the processor ended the request with an immediate_response.
	ImmediateResponse *immediateView `json:"immediate_response,omitempty"`
	// LocalReply is set when Envoy itself would answer (a rejected mutation, a gRPC error).
	LocalReply *immediateView `json:"local_reply,omitempty"`
	// Aborted is true when abort_after_response_chunks ended the request.
	Aborted bool `json:"aborted"`
	// ProcessorClosedEarly is true when the processor ended the stream (OK) before the filter was
	// done; Envoy then carries on without it.
	ProcessorClosedEarly bool          `json:"processor_closed_early,omitempty"`
	Trace                []traceEntry  `json:"trace"`
	DynamicMetadata      []metadataLog `json:"dynamic_metadata,omitempty"`
	// HeaderMutationWarnings lists mutations Envoy ignores ("set :authority", "remove host") or
	// applies surprisingly ("value-not-raw_value x-y": Envoy 1.40 reads raw_value only).
	HeaderMutationWarnings []string `json:"header_mutation_warnings,omitempty"`
	// Error is a protocol violation by the processor; the program exits 1 when it is set.
	Error string `json:"error,omitempty"`
}

type clientView struct {
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"`
	// Chunks are the response body pieces in the order the client received them.
	Chunks []string `json:"chunks"`
	// Reset is true when the client got a stream reset instead of (the rest of) a response.
	Reset bool `json:"reset"`
}

// upstreamView is what this program sent to the upstream (it is the router, so it captures it).
type upstreamView struct {
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"`
}

type immediateView struct {
	Status  int                 `json:"status"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"`
	Details string              `json:"details,omitempty"`
}

// traceEntry is one message or stream event. Dir is "sent" (filter → processor), "received"
// (processor → filter) or "stream" (half_close_and_reset, processor_eof, grpc_error).
type traceEntry struct {
	Dir          string          `json:"dir"`
	Type         string          `json:"type"`
	EndOfStream  bool            `json:"end_of_stream,omitempty"`
	BodyBytes    int             `json:"body_bytes,omitempty"`
	Status       string          `json:"status,omitempty"`
	ModeOverride json.RawMessage `json:"mode_override,omitempty"`
	// ModeOverrideApplied says whether Envoy honoured the mode_override.
	ModeOverrideApplied *bool  `json:"mode_override_applied,omitempty"`
	BodyMutation        string `json:"body_mutation,omitempty"`
	HeaderMutation      bool   `json:"header_mutation,omitempty"`
	Detail              string `json:"detail,omitempty"`
}

type metadataLog struct {
	Response string          `json:"response"`
	Metadata json.RawMessage `json:"metadata"`
}

// extProcConfig is the input checked and resolved.
type extProcConfig struct {
	in                *extProcInput
	mode              *procmodev3.ProcessingMode
	messageTimeout    time.Duration
	maxMessageTimeout time.Duration
	chunks            []string
	early             bool
}

func readExtProcInput(r io.Reader) (*extProcConfig, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	in := &extProcInput{}
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(in); err != nil {
		return nil, fmt.Errorf("stdin is not an ext-proc input document: %w", err)
	}
	cfg := &extProcConfig{in: in, mode: &procmodev3.ProcessingMode{}, messageTimeout: 200 * time.Millisecond}
	if in.Addr == "" || in.Upstream == "" {
		return nil, errors.New("addr and upstream are required")
	}
	if len(in.ProcessingMode) > 0 {
		if err := protojson.Unmarshal(in.ProcessingMode, cfg.mode); err != nil {
			return nil, fmt.Errorf("processing_mode is not a ProcessingMode: %w", err)
		}
	}
	if err := cfg.mode.ValidateAll(); err != nil {
		return nil, fmt.Errorf("processing_mode fails Envoy's validation: %w", err)
	}
	for _, body := range []procmodev3.ProcessingMode_BodySendMode{cfg.mode.GetRequestBodyMode(), cfg.mode.GetResponseBodyMode()} {
		if body != procmodev3.ProcessingMode_NONE && body != procmodev3.ProcessingMode_BUFFERED && body != procmodev3.ProcessingMode_STREAMED {
			return nil, fmt.Errorf("body mode %s is not modelled (NONE, BUFFERED, STREAMED are)", body)
		}
	}
	if cfg.mode.GetRequestTrailerMode() == procmodev3.ProcessingMode_SEND || cfg.mode.GetResponseTrailerMode() == procmodev3.ProcessingMode_SEND {
		return nil, errors.New("trailer mode SEND is not modelled (HTTP/1 requests and responses here carry no trailers)")
	}
	if in.MessageTimeout != "" {
		if cfg.messageTimeout, err = time.ParseDuration(in.MessageTimeout); err != nil {
			return nil, fmt.Errorf("message_timeout: %w", err)
		}
	}
	if in.MaxMessageTimeout != "" {
		if cfg.maxMessageTimeout, err = time.ParseDuration(in.MaxMessageTimeout); err != nil {
			return nil, fmt.Errorf("max_message_timeout: %w", err)
		}
	}
	if in.Request.Body != "" && len(in.Request.BodyChunks) > 0 {
		return nil, errors.New("request: give body or body_chunks, not both")
	}
	cfg.chunks = in.Request.BodyChunks
	if in.Request.Body != "" {
		cfg.chunks = []string{in.Request.Body}
	}
	switch in.Request.BodyArrival {
	case "", "with_headers":
		cfg.early = true
	case "after_headers_response":
	default:
		return nil, fmt.Errorf("request.body_arrival %q: use with_headers or after_headers_response", in.Request.BodyArrival)
	}
	if in.Request.Method == "" {
		in.Request.Method = "GET"
	}
	if !strings.HasPrefix(in.Request.Path, "/") {
		return nil, errors.New("request.path must start with /")
	}
	if in.Request.Authority == "" {
		in.Request.Authority = "localhost"
	}
	return cfg, nil
}
