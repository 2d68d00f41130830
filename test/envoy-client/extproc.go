package main

// ext-proc mode: plays Envoy 1.40's ext_proc HTTP filter (source/extensions/filters/http/ext_proc/
// ext_proc.cc, processor_state.cc) in front of a real upstream, for one downstream request, with
// go-control-plane's generated envoy.service.ext_proc.v3 types. Every ProcessingResponse is
// checked with its protoc-gen-validate rules, and anything Envoy would treat as a spurious
// message (or silently drop in a way that hides a processor bug) is reported as an error.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// errProtocol marks a processor protocol violation (the program then exits 1).
var errProtocol = errors.New("ext_proc protocol violation")

func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, args...))
}

// errStop ends processing early without an error (immediate response, local reply, abort).
var errStop = errors.New("stop")

func runExtProc(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("ext-proc takes no arguments (the input document is read from stdin)")
	}
	cfg, err := readExtProcInput(os.Stdin)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(cfg.in.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dialing %s: %w", cfg.in.Addr, err)
	}
	defer conn.Close()
	out := runFilter(context.Background(), cfg, extprocv3.NewExternalProcessorClient(conn))
	if err := writeJSON(out); err != nil {
		return err
	}
	if out.Error != "" {
		return errors.New(out.Error)
	}
	return nil
}

// direction is one ProcessorState: decoding (request) or encoding (response).
type direction struct {
	name        string
	sendHeaders bool
	bodyMode    procmodev3.ProcessingMode_BodySendMode
	headers     headerMap
	// replaced is set by CONTINUE_AND_REPLACE: the body is the processor's, nothing more is sent.
	replaced     bool
	replacedBody []byte
}

// shouldRemoveContentLength is ProcessorState::shouldRemoveContentLength.
func (d *direction) shouldRemoveContentLength() bool {
	return d.bodyMode == procmodev3.ProcessingMode_STREAMED || (d.bodyMode == procmodev3.ProcessingMode_BUFFERED && !d.sendHeaders)
}

// processes reports whether the direction still sends anything (the inverse of noExternalProcess).
func (d *direction) processes() bool {
	return d.sendHeaders || d.bodyMode != procmodev3.ProcessingMode_NONE
}

type recvResult struct {
	response *extprocv3.ProcessingResponse
	err      error
}

type filter struct {
	cfg       *extProcConfig
	out       *extProcOutput
	client    extprocv3.ExternalProcessorClient
	stream    extprocv3.ExternalProcessor_ProcessClient
	cancel    context.CancelFunc
	responses chan recvResult
	sentFirst bool
	// complete is Envoy's processing_complete_: the stream is closed or being ignored.
	complete bool
	timeout  time.Duration
	req      direction
	resp     direction
}

func (f *filter) setMode(mode *procmodev3.ProcessingMode) {
	f.req.sendHeaders = mode.GetRequestHeaderMode() != procmodev3.ProcessingMode_SKIP
	f.req.bodyMode = mode.GetRequestBodyMode()
	f.resp.sendHeaders = mode.GetResponseHeaderMode() != procmodev3.ProcessingMode_SKIP
	f.resp.bodyMode = mode.GetResponseBodyMode()
}

// runFilter processes the request; it never returns nil.
func runFilter(ctx context.Context, cfg *extProcConfig, client extprocv3.ExternalProcessorClient) *extProcOutput {
	out := &extProcOutput{Trace: []traceEntry{}, Client: clientView{Headers: map[string][]string{}, Chunks: []string{}}}
	f := &filter{cfg: cfg, out: out, client: client, timeout: cfg.messageTimeout, req: direction{name: "request"}, resp: direction{name: "response"}}
	f.setMode(cfg.mode)
	defer f.closeStream()
	err := f.run(ctx)
	if err != nil && !errors.Is(err, errStop) {
		out.Error = err.Error()
	}
	return out
}

func (f *filter) openStream(ctx context.Context) error {
	if f.stream != nil || f.complete {
		return nil
	}
	streamCtx, cancel := context.WithCancel(ctx)
	stream, err := f.client.Process(streamCtx)
	if err != nil {
		cancel()
		return fmt.Errorf("opening the Process stream: %w", err)
	}
	f.stream, f.cancel = stream, cancel
	f.responses = make(chan recvResult, 64)
	go func(responses chan<- recvResult) {
		for {
			response, err := stream.Recv()
			responses <- recvResult{response, err}
			if err != nil {
				return
			}
		}
	}(f.responses)
	return nil
}

// closeStream is Filter::closeStream: half-close, then reset (ExternalProcessorStreamImpl::close).
func (f *filter) closeStream() {
	f.complete = true
	if f.stream == nil {
		return
	}
	_ = f.stream.CloseSend()
	f.cancel()
	f.stream = nil
	f.trace(traceEntry{Dir: "stream", Type: "half_close_and_reset"})
}

func (f *filter) trace(entry traceEntry) { f.out.Trace = append(f.out.Trace, entry) }

func (f *filter) send(request *extprocv3.ProcessingRequest, entry traceEntry) error {
	if !f.sentFirst {
		request.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: f.cfg.mode.GetRequestBodyMode(), ResponseBodyMode: f.cfg.mode.GetResponseBodyMode()}
		f.sentFirst = true
	}
	if err := request.ValidateAll(); err != nil {
		return fmt.Errorf("internal: the filter built an invalid ProcessingRequest: %w", err)
	}
	entry.Dir = "sent"
	f.trace(entry)
	if err := f.stream.Send(request); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("sending %s: %w", entry.Type, err)
	}
	return nil
}

func (f *filter) sendHeaders(d *direction, endOfStream bool) error {
	headers := &extprocv3.HttpHeaders{Headers: d.headers.toProto(), EndOfStream: endOfStream}
	request := &extprocv3.ProcessingRequest{}
	if d == &f.req {
		request.Request = &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: headers}
	} else {
		request.Request = &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: headers}
	}
	return f.send(request, traceEntry{Type: d.name + "_headers", EndOfStream: endOfStream})
}

func (f *filter) sendBody(d *direction, body []byte, endOfStream bool) error {
	message := &extprocv3.HttpBody{Body: body, EndOfStream: endOfStream}
	request := &extprocv3.ProcessingRequest{}
	if d == &f.req {
		request.Request = &extprocv3.ProcessingRequest_RequestBody{RequestBody: message}
	} else {
		request.Request = &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: message}
	}
	return f.send(request, traceEntry{Type: d.name + "_body", EndOfStream: endOfStream, BodyBytes: len(body)})
}

// receivedKind names a response's oneof for the trace and for matching.
func receivedKind(response *extprocv3.ProcessingResponse) string {
	switch response.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return "request_headers"
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return "response_headers"
	case *extprocv3.ProcessingResponse_RequestBody:
		return "request_body"
	case *extprocv3.ProcessingResponse_ResponseBody:
		return "response_body"
	case *extprocv3.ProcessingResponse_RequestTrailers:
		return "request_trailers"
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		return "response_trailers"
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return "immediate_response"
	case *extprocv3.ProcessingResponse_StreamedImmediateResponse:
		return "streamed_immediate_response"
	}
	return "none"
}

// commonOf returns the CommonResponse of a headers or body response.
func commonOf(response *extprocv3.ProcessingResponse) *extprocv3.CommonResponse {
	switch r := response.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		return r.RequestHeaders.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		return r.ResponseHeaders.GetResponse()
	case *extprocv3.ProcessingResponse_RequestBody:
		return r.RequestBody.GetResponse()
	case *extprocv3.ProcessingResponse_ResponseBody:
		return r.ResponseBody.GetResponse()
	}
	return nil
}

// event is what the filter's loop wakes up for.
type event struct {
	response *extprocv3.ProcessingResponse
	chunk    *upstreamChunk
}

// await waits for the next ProcessingResponse under the message timer, or for an upstream chunk
// when chunks is not nil. It handles override_message_timeout, gRPC errors and the processor's
// early close itself; a nil event with a nil error means the processor closed the stream.
func (f *filter) await(expected string, chunks <-chan upstreamChunk) (event, error) {
	timer := time.NewTimer(f.timeout)
	defer timer.Stop()
	for {
		select {
		case chunk, ok := <-chunks:
			if !ok {
				chunks = nil
				continue
			}
			return event{chunk: &chunk}, nil
		case <-timer.C:
			return event{}, protocolError("no response to %s within message_timeout %s (Envoy answers 504 ext_proc_error_per-message_timeout_exceeded)", expected, f.timeout)
		case result := <-f.responses:
			if result.err != nil {
				return event{}, f.streamEnded(result.err)
			}
			response := result.response
			if err := response.ValidateAll(); err != nil {
				return event{}, protocolError("invalid ProcessingResponse (protoc-gen-validate): %v", err)
			}
			if override := response.GetOverrideMessageTimeout(); override != nil {
				// Filter::onNewTimeout: honoured only within max_message_timeout; the message
				// carries nothing else that Envoy reads.
				entry := traceEntry{Dir: "received", Type: "override_message_timeout", Detail: override.AsDuration().String()}
				if f.cfg.maxMessageTimeout > 0 && override.AsDuration() >= time.Millisecond && override.AsDuration() <= f.cfg.maxMessageTimeout {
					f.timeout = override.AsDuration()
					timer.Reset(f.timeout)
				} else {
					entry.Detail += " (ignored)"
				}
				f.trace(entry)
				continue
			}
			if metadata := response.GetDynamicMetadata(); metadata != nil {
				raw, _ := protojson.Marshal(metadata)
				f.out.DynamicMetadata = append(f.out.DynamicMetadata, metadataLog{Response: receivedKind(response), Metadata: raw})
			}
			return event{response: response}, nil
		}
	}
}

// streamEnded is onGrpcClose / onGrpcError with failure_mode_allow false.
func (f *filter) streamEnded(err error) error {
	f.stream = nil
	f.complete = true
	if errors.Is(err, io.EOF) {
		f.trace(traceEntry{Dir: "stream", Type: "processor_eof"})
		f.out.ProcessorClosedEarly = true
		return nil
	}
	st := status.Convert(err)
	f.trace(traceEntry{Dir: "stream", Type: "grpc_error", Detail: st.Code().String() + ": " + st.Message()})
	f.localReply(500, fmt.Sprintf("ext_proc_error_gRPC_error_%d{%s}", int(st.Code()), st.Message()))
	return errStop
}

// localReply records Envoy's own reply (status_on_error defaults to 500).
func (f *filter) localReply(code int, details string) {
	f.closeStream()
	f.out.LocalReply = &immediateView{Status: code, Headers: map[string][]string{}, Details: details}
	if f.clientStarted() {
		f.out.Client.Reset = true
		return
	}
	f.out.Client.Status = code
	f.out.Client.Headers = map[string][]string{}
}

// clientStarted reports whether response headers already went to the client (a local reply is
// then a stream reset).
func (f *filter) clientStarted() bool { return f.out.Client.Status != 0 }

// traceReceived records a response, applying a mode_override first as Filter::onReceiveMessage
// does: only with allow_mode_override and only while a headers response is awaited.
func (f *filter) traceReceived(response *extprocv3.ProcessingResponse, inHeaderState bool) {
	entry := traceEntry{Dir: "received", Type: receivedKind(response)}
	if common := commonOf(response); common != nil {
		entry.Status = common.GetStatus().String()
		entry.HeaderMutation = common.GetHeaderMutation() != nil
		switch common.GetBodyMutation().GetMutation().(type) {
		case *extprocv3.BodyMutation_Body:
			entry.BodyMutation = "body"
		case *extprocv3.BodyMutation_ClearBody:
			entry.BodyMutation = "clear_body"
		case *extprocv3.BodyMutation_StreamedResponse:
			entry.BodyMutation = "streamed_response"
		}
	}
	if override := response.GetModeOverride(); override != nil {
		entry.ModeOverride, _ = protojson.Marshal(override)
		applied := f.cfg.in.AllowModeOverride && inHeaderState
		entry.ModeOverrideApplied = &applied
		if applied {
			f.setMode(effectiveModeOverride(override, f.cfg.mode))
		}
	}
	f.trace(entry)
}

// effectiveModeOverride: DEFAULT header and trailer modes in an override leave the configured
// ones; body modes are always taken from the override.
func effectiveModeOverride(override, configured *procmodev3.ProcessingMode) *procmodev3.ProcessingMode {
	mode := &procmodev3.ProcessingMode{
		RequestHeaderMode: configured.GetRequestHeaderMode(), ResponseHeaderMode: configured.GetResponseHeaderMode(),
		RequestTrailerMode: configured.GetRequestTrailerMode(), ResponseTrailerMode: configured.GetResponseTrailerMode(),
		RequestBodyMode: override.GetRequestBodyMode(), ResponseBodyMode: override.GetResponseBodyMode(),
	}
	if override.GetRequestHeaderMode() != procmodev3.ProcessingMode_DEFAULT {
		mode.RequestHeaderMode = override.GetRequestHeaderMode()
	}
	if override.GetResponseHeaderMode() != procmodev3.ProcessingMode_DEFAULT {
		mode.ResponseHeaderMode = override.GetResponseHeaderMode()
	}
	if override.GetRequestTrailerMode() != procmodev3.ProcessingMode_DEFAULT {
		mode.RequestTrailerMode = override.GetRequestTrailerMode()
	}
	if override.GetResponseTrailerMode() != procmodev3.ProcessingMode_DEFAULT {
		mode.ResponseTrailerMode = override.GetResponseTrailerMode()
	}
	return mode
}

// immediate is Filter::sendImmediateResponse: the status defaults to 200 (and replaces anything
// below 200); headers are mutated with the permissive immediate-response rules, failures ignored;
// a non-empty body gets content-type text/plain unless the processor set one.
func (f *filter) immediate(response *extprocv3.ImmediateResponse) error {
	f.closeStream()
	code := int(response.GetStatus().GetCode())
	if response.GetStatus() == nil || code < 200 {
		code = 200
	}
	headers := headerMap{}
	if mutation := response.GetHeaders(); mutation != nil {
		_ = applyHeaderMutation(mutation, &headers, mutationRules{allowAllRouting: true, allowEnvoy: true}, false, false, &f.out.HeaderMutationWarnings)
	}
	if len(response.GetBody()) > 0 {
		headers.set("content-length", fmt.Sprint(len(response.GetBody())))
		if _, ok := headers.first("content-type"); !ok {
			headers.set("content-type", "text/plain")
		}
	}
	view := &immediateView{Status: code, Headers: headers.toJSON(), Body: string(response.GetBody()), Details: response.GetDetails()}
	f.out.ImmediateResponse = view
	if f.clientStarted() {
		// sendLocalReply after the response headers went out: Envoy resets the stream.
		f.out.Client.Reset = true
		return errStop
	}
	f.out.Client.Status, f.out.Client.Headers, f.out.Client.Body = code, view.Headers, view.Body
	return errStop
}
