package main

// Proves the ext-proc client's protocol handling against an in-process ExternalProcessor and a
// real HTTP upstream, before it is pointed at Signalbox.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// script answers one ProcessingRequest; nil means no answer.
type script func(request *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse

type fakeProcessor struct {
	extprocv3.UnimplementedExternalProcessorServer
	answer   script
	mu       sync.Mutex
	received []string
	ended    chan struct{}
}

func (p *fakeProcessor) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	defer close(p.ended)
	for {
		request, err := stream.Recv()
		if err != nil {
			return nil
		}
		p.mu.Lock()
		p.received = append(p.received, fmt.Sprintf("%T", request.GetRequest()))
		p.mu.Unlock()
		if response := p.answer(request); response != nil {
			if err := stream.Send(response); err != nil {
				return nil
			}
		}
	}
}

// upstreamRecorder is a fake provider: it records the request and answers with chunks (flushed
// one by one, like an SSE stream) or one body.
type upstreamRecorder struct {
	chunks []string
	body   []byte
	header http.Header
}

func startUpstream(t *testing.T, chunks []string) (*httptest.Server, *upstreamRecorder) {
	rec := &upstreamRecorder{chunks: chunks}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.body, _ = io.ReadAll(r.Body)
		rec.header = r.Header.Clone()
		w.Header().Set("content-type", "text/event-stream")
		for _, chunk := range rec.chunks {
			_, _ = io.WriteString(w, chunk)
			w.(http.Flusher).Flush()
			time.Sleep(30 * time.Millisecond)
		}
	}))
	t.Cleanup(server.Close)
	return server, rec
}

func runCase(t *testing.T, answer script, input map[string]any) (*extProcOutput, *fakeProcessor) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	processor := &fakeProcessor{answer: answer, ended: make(chan struct{})}
	extprocv3.RegisterExternalProcessorServer(server, processor)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	input["addr"] = listener.Addr().String()
	if _, ok := input["message_timeout"]; !ok {
		input["message_timeout"] = "2s"
	}
	raw, _ := json.Marshal(input)
	cfg, err := readExtProcInput(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(cfg.in.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return runFilter(ctx, cfg, extprocv3.NewExternalProcessorClient(conn)), processor
}

func cont() *extprocv3.CommonResponse { return &extprocv3.CommonResponse{} }

// passThrough answers every message with CONTINUE.
func passThrough(request *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	switch request.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: cont()}}}
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{Response: cont()}}}
	case *extprocv3.ProcessingRequest_RequestBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: cont()}}}
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: cont()}}}
	}
	return nil
}

func setHeader(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, RawValue: []byte(value)}}
}

func chatRequest(extra map[string]any) map[string]any {
	request := map[string]any{"method": "POST", "path": "/v1/chat/completions", "authority": "llm.internal",
		"headers": map[string]string{"content-type": "application/json", "x-drop": "1"}, "body": `{"model":"m"}`}
	for k, v := range extra {
		request[k] = v
	}
	return request
}

func traceTypes(out *extProcOutput) string {
	var parts []string
	for _, e := range out.Trace {
		parts = append(parts, e.Dir+":"+e.Type)
	}
	return strings.Join(parts, " ")
}

func TestImmediateResponseStopsBeforeUpstream(t *testing.T) {
	upstream, rec := startUpstream(t, []string{"never"})
	out, _ := runCase(t, func(request *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}, Body: []byte(`{"error":"denied"}`),
			Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-type", "application/json")}}, Details: "policy_denied",
		}}}
	}, map[string]any{"upstream": upstream.URL, "request": chatRequest(nil)})
	if out.Error != "" || out.Client.Status != 403 || out.Client.Body != `{"error":"denied"}` || out.Client.Headers["content-type"][0] != "application/json" {
		t.Fatalf("unexpected output: %+v", out)
	}
	if out.ImmediateResponse == nil || out.ImmediateResponse.Details != "policy_denied" || out.Upstream != nil || rec.body != nil {
		t.Fatalf("the upstream must not be called after an immediate response: %+v", out)
	}
	if got := traceTypes(out); got != "sent:request_headers received:immediate_response stream:half_close_and_reset" {
		t.Fatalf("trace %q", got)
	}
}

func TestHeaderMutationFollowsEnvoyRules(t *testing.T) {
	upstream, rec := startUpstream(t, []string{"ok"})
	out, _ := runCase(t, func(request *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if request.GetRequestHeaders() != nil {
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
				HeaderMutation: &extprocv3.HeaderMutation{
					SetHeaders:    []*corev3.HeaderValueOption{setHeader("x-added", "yes"), setHeader(":authority", "evil.example"), setHeader("x-envoy-foo", "1"), {Header: &corev3.HeaderValue{Key: "x-multi", RawValue: []byte("b")}, Append: wrapperspb.Bool(true)}},
					RemoveHeaders: []string{"x-drop", "host", ":path"},
				},
			}}}}
		}
		return passThrough(request)
	}, map[string]any{"upstream": upstream.URL, "request": chatRequest(map[string]any{"headers": map[string]string{"x-drop": "1", "x-multi": "a"}})})
	if out.Error != "" {
		t.Fatal(out.Error)
	}
	if rec.header.Get("x-added") != "yes" || rec.header.Get("x-drop") != "" || rec.header.Get("x-envoy-foo") != "" || strings.Join(rec.header.Values("x-multi"), ",") != "a,b" {
		t.Fatalf("upstream headers %v", rec.header)
	}
	if out.Upstream.Headers["host"][0] != "llm.internal" || out.Upstream.Path != "/v1/chat/completions" {
		t.Fatalf("routing headers must not change: %+v", out.Upstream)
	}
	want := "set :authority,set x-envoy-foo,remove host,remove :path"
	for _, w := range strings.Split(want, ",") {
		if !strings.Contains(strings.Join(out.HeaderMutationWarnings, ","), w) {
			t.Fatalf("warnings %v lack %q", out.HeaderMutationWarnings, w)
		}
	}
}

func bufferedRedactor(newBody string, setLength bool) script {
	return func(request *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if request.GetRequestBody() == nil {
			return passThrough(request)
		}
		common := &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte(newBody)}}}
		if setLength {
			common.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-length", fmt.Sprint(len(newBody)))}}
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: common}}}
	}
}

func TestBufferedBodyReplacement(t *testing.T) {
	upstream, rec := startUpstream(t, []string{"ok"})
	mode := map[string]any{"requestBodyMode": "BUFFERED", "responseHeaderMode": "SKIP"}
	out, _ := runCase(t, bufferedRedactor(`{"model":"m","x":"[REDACTED]"}`, true), map[string]any{"upstream": upstream.URL, "processing_mode": mode, "request": chatRequest(nil)})
	if out.Error != "" || string(rec.body) != `{"model":"m","x":"[REDACTED]"}` || out.Client.Body != "ok" {
		t.Fatalf("output %+v, upstream body %q", out, rec.body)
	}
	if got := traceTypes(out); got != "sent:request_headers received:request_headers sent:request_body received:request_body stream:half_close_and_reset" {
		t.Fatalf("trace %q", got)
	}
	// Without updating content-length Envoy refuses the mutation with a local reply.
	upstream2, rec2 := startUpstream(t, []string{"ok"})
	out, _ = runCase(t, bufferedRedactor("{}", false), map[string]any{"upstream": upstream2.URL, "processing_mode": mode, "request": chatRequest(nil)})
	if out.LocalReply == nil || out.Client.Status != 500 || rec2.body != nil {
		t.Fatalf("expected a 500 local reply, got %+v", out)
	}
}

func upperChunks(request *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	body := request.GetResponseBody()
	if body == nil {
		return passThrough(request)
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
		BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: bytes.ToUpper(body.GetBody())}},
	}}}}
}

func TestStreamedResponseChunksInOrder(t *testing.T) {
	upstream, _ := startUpstream(t, []string{"data: a\n\n", "data: b\n\n", "data: [DONE]\n\n"})
	out, _ := runCase(t, upperChunks, map[string]any{"upstream": upstream.URL, "processing_mode": map[string]any{"responseBodyMode": "STREAMED"}, "request": chatRequest(nil)})
	if out.Error != "" {
		t.Fatal(out.Error)
	}
	if got := strings.Join(out.Client.Chunks, "|"); got != "DATA: A\n\n|DATA: B\n\n|DATA: [DONE]\n\n" {
		t.Fatalf("chunks %q", got)
	}
	if _, ok := out.Client.Headers["content-length"]; ok || out.Client.Status != 200 {
		t.Fatalf("client view %+v", out.Client)
	}
	if n := strings.Count(traceTypes(out), "sent:response_body"); n != 4 { // three chunks and the empty end of stream
		t.Fatalf("%d response_body messages: %s", n, traceTypes(out))
	}
}

func TestStreamedRequestChunksAfterHeaders(t *testing.T) {
	upstream, rec := startUpstream(t, []string{"ok"})
	redact := func(request *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if body := request.GetRequestBody(); body != nil {
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: bytes.ReplaceAll(body.GetBody(), []byte("secret"), []byte("******"))}},
			}}}}
		}
		return passThrough(request)
	}
	request := chatRequest(map[string]any{"body": "", "body_chunks": []string{"a secret ", "and another secret"}, "body_arrival": "after_headers_response"})
	out, _ := runCase(t, redact, map[string]any{"upstream": upstream.URL, "processing_mode": map[string]any{"requestBodyMode": "STREAMED", "responseHeaderMode": "SKIP"}, "request": request})
	if out.Error != "" || string(rec.body) != "a ****** and another ******" || out.Upstream.Headers["transfer-encoding"][0] != "chunked" {
		t.Fatalf("output %+v upstream body %q", out, rec.body)
	}
}

func TestModeOverrideNeedsAllowModeOverride(t *testing.T) {
	override := func(request *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		response := passThrough(request)
		if request.GetRequestHeaders() != nil {
			response.ModeOverride = &procmodev3.ProcessingMode{RequestBodyMode: procmodev3.ProcessingMode_BUFFERED, ResponseHeaderMode: procmodev3.ProcessingMode_SKIP}
		}
		return response
	}
	for _, allow := range []bool{true, false} {
		upstream, _ := startUpstream(t, []string{"ok"})
		out, _ := runCase(t, override, map[string]any{"upstream": upstream.URL, "allow_mode_override": allow, "request": chatRequest(nil)})
		if out.Error != "" {
			t.Fatal(out.Error)
		}
		sentBody := strings.Contains(traceTypes(out), "sent:request_body")
		sentResponseHeaders := strings.Contains(traceTypes(out), "sent:response_headers")
		if sentBody != allow || sentResponseHeaders == allow || *out.Trace[1].ModeOverrideApplied != allow {
			t.Fatalf("allow_mode_override=%v: trace %s", allow, traceTypes(out))
		}
	}
}

func TestAbortClosesTheStream(t *testing.T) {
	upstream, _ := startUpstream(t, []string{"data: 1\n\n", "data: 2\n\n", "data: 3\n\n", "data: 4\n\n"})
	out, processor := runCase(t, upperChunks, map[string]any{"upstream": upstream.URL, "processing_mode": map[string]any{"responseBodyMode": "STREAMED"}, "request": chatRequest(nil), "abort_after_response_chunks": 2})
	if out.Error != "" || !out.Aborted || len(out.Client.Chunks) != 2 {
		t.Fatalf("output %+v", out)
	}
	select {
	case <-processor.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the processor's stream did not end after the client went away")
	}
}

func TestProtocolViolationsFailLoudly(t *testing.T) {
	upstream, _ := startUpstream(t, []string{"ok"})
	wrongType := func(request *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	}
	if out, _ := runCase(t, wrongType, map[string]any{"upstream": upstream.URL, "request": chatRequest(nil)}); !strings.Contains(out.Error, "spurious response_body") {
		t.Fatalf("wrong response type not caught: %+v", out)
	}
	bodyInHeaders := func(request *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
			BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}},
		}}}}
	}
	if out, _ := runCase(t, bodyInHeaders, map[string]any{"upstream": upstream.URL, "request": chatRequest(nil)}); !strings.Contains(out.Error, "body_mutation with status CONTINUE") {
		t.Fatalf("body mutation in a headers response not caught: %+v", out)
	}
	silent := func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse { return nil }
	if out, _ := runCase(t, silent, map[string]any{"upstream": upstream.URL, "message_timeout": "100ms", "request": chatRequest(nil)}); !strings.Contains(out.Error, "message_timeout") {
		t.Fatalf("timeout not caught: %+v", out)
	}
	invalid := func(*extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{}}}
	}
	if out, _ := runCase(t, invalid, map[string]any{"upstream": upstream.URL, "request": chatRequest(nil)}); !strings.Contains(out.Error, "protoc-gen-validate") {
		t.Fatalf("invalid response not caught: %+v", out)
	}
}
