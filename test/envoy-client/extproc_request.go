package main

// The decoding side of the filter (request headers and body) and the router's call upstream.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

func (f *filter) run(ctx context.Context) error {
	body, err := f.decode(ctx)
	if err != nil {
		return err
	}
	upstream, err := f.callUpstream(ctx, body)
	if err != nil {
		return err
	}
	return f.encode(ctx, upstream)
}

// requestHeaders builds the map Envoy's HTTP connection manager hands the filter for an HTTP/1.1
// request: pseudo-headers first, the client's headers, then x-forwarded-proto and x-request-id.
func (f *filter) requestHeaders(body []byte) headerMap {
	r := f.cfg.in.Request
	headers := headerMap{{":authority", r.Authority}, {":path", r.Path}, {":method", r.Method}, {":scheme", "http"}}
	names := make([]string, 0, len(r.Headers))
	for name := range r.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		headers.add(strings.ToLower(name), r.Headers[name])
	}
	if _, ok := headers.first("content-length"); !ok && len(body) > 0 {
		headers.add("content-length", strconv.Itoa(len(body)))
	}
	headers.set("x-forwarded-proto", "http")
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	headers.set("x-request-id", hex.EncodeToString(id))
	return headers
}

// handleHeadersResponse is ProcessorState::handleHeadersResponse for either direction; held is
// body data already buffered when the response arrived (CONTINUE_AND_REPLACE mutates it).
func (f *filter) handleHeadersResponse(d *direction, response *extprocv3.ProcessingResponse, held []byte) error {
	if immediate := response.GetImmediateResponse(); immediate != nil {
		return f.immediate(immediate)
	}
	if kind := receivedKind(response); kind != d.name+"_headers" {
		return protocolError("spurious %s response while Envoy awaits %s_headers (Envoy answers 500)", kind, d.name)
	}
	common := commonOf(response)
	replacing := common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE
	if mutation := common.GetHeaderMutation(); mutation != nil {
		if err := applyHeaderMutation(mutation, &d.headers, mutationRules{}, replacing, d.shouldRemoveContentLength(), &f.out.HeaderMutationWarnings); err != nil {
			f.localReply(500, err.Error())
			return errStop
		}
	}
	if common.GetTrailers() != nil {
		return protocolError("%s_headers response sets trailers, which Envoy ignores", d.name)
	}
	if !replacing {
		if common.GetBodyMutation() != nil {
			return protocolError("%s_headers response has a body_mutation with status CONTINUE; Envoy ignores it (only CONTINUE_AND_REPLACE replaces the body)", d.name)
		}
		return nil
	}
	if mutation := common.GetBodyMutation(); mutation != nil {
		if _, streamed := mutation.GetMutation().(*extprocv3.BodyMutation_StreamedResponse); streamed {
			return protocolError("%s_headers response carries a streamed_response body mutation, which only FULL_DUPLEX_STREAMED accepts", d.name)
		}
		d.headers.remove("content-length")
		d.replaced = true
		d.replacedBody = applyBodyMutation(mutation, held)
	}
	// Nothing more is sent for this direction after CONTINUE_AND_REPLACE.
	d.bodyMode = procmodev3.ProcessingMode_NONE
	return nil
}

// handleBufferedBody is the BufferedBodyCallback case of handleBodyResponse: header mutations
// apply when the headers are still held, a body mutation must match a remaining content-length.
func (f *filter) handleBufferedBody(d *direction, response *extprocv3.ProcessingResponse, body []byte, headersHeld bool) ([]byte, error) {
	if immediate := response.GetImmediateResponse(); immediate != nil {
		return nil, f.immediate(immediate)
	}
	if kind := receivedKind(response); kind != d.name+"_body" {
		return nil, protocolError("spurious %s response while Envoy awaits %s_body (Envoy answers 500)", kind, d.name)
	}
	common := commonOf(response)
	if mutation := common.GetBodyMutation(); mutation != nil {
		if _, streamed := mutation.GetMutation().(*extprocv3.BodyMutation_StreamedResponse); streamed {
			return nil, protocolError("%s_body response carries streamed_response outside FULL_DUPLEX_STREAMED (Envoy answers 500)", d.name)
		}
	}
	if mutation := common.GetHeaderMutation(); mutation != nil {
		if !headersHeld {
			f.out.HeaderMutationWarnings = append(f.out.HeaderMutationWarnings, "header_mutation in "+d.name+"_body ignored: headers already sent")
		} else if err := applyHeaderMutation(mutation, &d.headers, mutationRules{}, common.GetStatus() == extprocv3.CommonResponse_CONTINUE_AND_REPLACE, d.shouldRemoveContentLength(), &f.out.HeaderMutationWarnings); err != nil {
			f.localReply(500, err.Error())
			return nil, errStop
		}
	}
	if mutation := common.GetBodyMutation(); mutation != nil {
		if headersHeld {
			if length, ok := d.headers.first("content-length"); ok {
				if n, err := strconv.Atoi(length); err == nil && n != len(mutation.GetBody()) {
					f.localReply(500, "mismatch between content length and the length of the mutated body")
					return nil, errStop
				}
			}
		}
		body = applyBodyMutation(mutation, body)
	}
	return body, nil
}

// streamedChunkResponse is the StreamedBodyCallback case: a body mutation applies to the oldest
// outstanding chunk; header mutations are ignored by Envoy, so they are reported.
func (f *filter) streamedChunkResponse(d *direction, response *extprocv3.ProcessingResponse, chunk []byte) ([]byte, error) {
	if immediate := response.GetImmediateResponse(); immediate != nil {
		return nil, f.immediate(immediate)
	}
	if kind := receivedKind(response); kind != d.name+"_body" {
		return nil, protocolError("spurious %s response while Envoy awaits %s_body (Envoy answers 500)", kind, d.name)
	}
	common := commonOf(response)
	if _, streamed := common.GetBodyMutation().GetMutation().(*extprocv3.BodyMutation_StreamedResponse); streamed {
		return nil, protocolError("%s_body response carries streamed_response outside FULL_DUPLEX_STREAMED (Envoy answers 500)", d.name)
	}
	if common.GetHeaderMutation() != nil {
		f.out.HeaderMutationWarnings = append(f.out.HeaderMutationWarnings, "header_mutation in a STREAMED "+d.name+"_body response ignored")
	}
	if mutation := common.GetBodyMutation(); mutation != nil {
		return applyBodyMutation(mutation, chunk), nil
	}
	return chunk, nil
}

// decode runs the request through the filter and returns the body for the upstream.
func (f *filter) decode(ctx context.Context) ([]byte, error) {
	body := []byte(strings.Join(f.cfg.chunks, ""))
	d := &f.req
	d.headers = f.requestHeaders(body)
	noBody := len(body) == 0
	headersSent := false
	if d.sendHeaders {
		if err := f.openStream(ctx); err != nil {
			return nil, err
		}
		if err := f.sendHeaders(d, noBody); err != nil {
			return nil, err
		}
		headersSent = true
	}
	// decodeHeaders removes content-length after sending, by the configured mode.
	if d.shouldRemoveContentLength() {
		d.headers.remove("content-length")
	}
	if headersSent {
		ev, err := f.await("request_headers", nil)
		if err != nil || ev.response == nil {
			return body, err
		}
		f.traceReceived(ev.response, true)
		if err := f.handleHeadersResponse(d, ev.response, body); err != nil {
			return nil, err
		}
		if d.replaced {
			f.closeIfLast(true)
			return d.replacedBody, nil
		}
		f.closeIfLast(noBody || d.bodyMode == procmodev3.ProcessingMode_NONE)
	}
	if noBody || f.complete || d.bodyMode == procmodev3.ProcessingMode_NONE {
		return body, nil
	}
	if err := f.openStream(ctx); err != nil {
		return nil, err
	}
	held := headersSent && f.cfg.early
	if held || d.bodyMode == procmodev3.ProcessingMode_BUFFERED {
		// The whole body is buffered: one message, end_of_stream set (no trailers here).
		if err := f.sendBody(d, body, true); err != nil {
			return nil, err
		}
		ev, err := f.await("request_body", nil)
		if err != nil || ev.response == nil {
			return body, err
		}
		f.traceReceived(ev.response, false)
		// Envoy skips the early close after a buffered body; the stream closes at the end.
		return f.handleBufferedBody(d, ev.response, body, headersSent)
	}
	// STREAMED, frames arriving one by one: Envoy sends each without waiting for answers.
	for i, chunk := range f.cfg.chunks {
		if err := f.sendBody(d, []byte(chunk), i == len(f.cfg.chunks)-1); err != nil {
			return nil, err
		}
	}
	var out []byte
	for i, chunk := range f.cfg.chunks {
		ev, err := f.await("request_body", nil)
		if err != nil {
			return nil, err
		}
		if ev.response == nil {
			// The processor went away: the rest passes unprocessed (clearAsyncState).
			return append(out, []byte(strings.Join(f.cfg.chunks[i:], ""))...), nil
		}
		f.traceReceived(ev.response, false)
		mutated, err := f.streamedChunkResponse(d, ev.response, []byte(chunk))
		if err != nil {
			return nil, err
		}
		out = append(out, mutated...)
	}
	f.closeIfLast(true)
	return out, nil
}

// closeIfLast is closeGrpcStreamIfLastRespReceived for the request side: with requestDone, the
// stream closes when the response side sends nothing.
func (f *filter) closeIfLast(requestDone bool) {
	if requestDone && !f.resp.processes() {
		f.closeStream()
	}
}

// hopByHop headers are the connection's, not the message's.
var hopByHop = map[string]bool{"connection": true, "keep-alive": true, "transfer-encoding": true, "upgrade": true, "proxy-connection": true}

type upstreamResult struct {
	response *http.Response
	cancel   context.CancelFunc
}

// callUpstream is the router: the (mutated) request goes to the upstream over HTTP/1.1; what was
// sent is recorded as the upstream view.
func (f *filter) callUpstream(ctx context.Context, body []byte) (*upstreamResult, error) {
	d := &f.req
	method, _ := d.headers.first(":method")
	path, _ := d.headers.first(":path")
	authority, _ := d.headers.first(":authority")
	upstreamCtx, cancel := context.WithCancel(ctx)
	request, err := http.NewRequestWithContext(upstreamCtx, method, strings.TrimRight(f.cfg.in.Upstream, "/")+path, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("building the upstream request: %w", err)
	}
	request.Host = authority
	request.Header = http.Header{"User-Agent": {""}}
	view := &upstreamView{Method: method, Path: path, Headers: map[string][]string{"host": {authority}}, Body: string(body)}
	for _, e := range d.headers {
		if strings.HasPrefix(e.key, ":") || hopByHop[e.key] || e.key == "content-length" || e.key == "host" {
			continue
		}
		request.Header.Add(e.key, e.value)
		view.Headers[e.key] = append(view.Headers[e.key], e.value)
	}
	// Without a content-length (removed for STREAMED, or by CONTINUE_AND_REPLACE) Envoy's HTTP/1
	// codec sends the body chunked.
	if _, ok := d.headers.first("content-length"); ok || len(body) == 0 {
		request.ContentLength = int64(len(body))
		if len(body) > 0 {
			view.Headers["content-length"] = []string{strconv.Itoa(len(body))}
		}
	} else {
		request.ContentLength = -1
		view.Headers["transfer-encoding"] = []string{"chunked"}
	}
	f.out.Upstream = view
	client := &http.Client{
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	response, err := client.Do(request)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("calling the upstream %s: %w", f.cfg.in.Upstream, err)
	}
	return &upstreamResult{response: response, cancel: cancel}, nil
}
