package main

// The encoding side of the filter: response headers and body from the real upstream, chunk by
// chunk as they arrive, to the downstream client.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	procmodev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
)

// upstreamChunk is one data frame from the upstream; the last one has endOfStream (for a chunked
// response an empty frame, as Envoy's HTTP/1 codec delivers the terminating chunk).
type upstreamChunk struct {
	data        []byte
	endOfStream bool
	err         error
}

func readUpstream(body io.ReadCloser, contentLength int64, chunks chan<- upstreamChunk) {
	defer close(chunks)
	defer body.Close()
	var total int64
	buffer := make([]byte, 64*1024)
	for {
		n, err := body.Read(buffer)
		if n > 0 {
			total += int64(n)
			last := contentLength > 0 && total >= contentLength
			chunks <- upstreamChunk{data: append([]byte{}, buffer[:n]...), endOfStream: last}
			if last {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			chunks <- upstreamChunk{endOfStream: true}
			return
		}
		if err != nil {
			chunks <- upstreamChunk{err: err}
			return
		}
	}
}

// responseHeaders is the map the router hands the filter chain for the upstream's response.
func responseHeaders(response *http.Response) headerMap {
	headers := headerMap{{":status", strconv.Itoa(response.StatusCode)}}
	names := make([]string, 0, len(response.Header))
	for name := range response.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		lower := strings.ToLower(name)
		if hopByHop[lower] {
			continue
		}
		for _, value := range response.Header[name] {
			headers.add(lower, value)
		}
	}
	if _, ok := headers.first("content-length"); !ok && response.ContentLength >= 0 {
		headers.add("content-length", strconv.FormatInt(response.ContentLength, 10))
	}
	return headers
}

type queuedChunk struct {
	data        []byte
	endOfStream bool
}

// encoder is the response side's state between events.
type encoder struct {
	f              *filter
	upstream       *upstreamResult
	headersPending bool
	bufferedWait   bool
	held           []byte
	heldComplete   bool
	queue          []queuedChunk
	upstreamDone   bool
	delivered      int
}

func (e *encoder) clientHeaders() {
	f := e.f
	if f.clientStarted() {
		return
	}
	code, _ := f.resp.headers.first(":status")
	f.out.Client.Status, _ = strconv.Atoi(code)
	f.out.Client.Headers = f.resp.headers.toJSON()
}

// deliver passes data to the client; endOfStream ends the response.
func (e *encoder) deliver(data []byte) error {
	e.clientHeaders()
	if len(data) == 0 {
		return nil
	}
	f := e.f
	f.out.Client.Chunks = append(f.out.Client.Chunks, string(data))
	f.out.Client.Body += string(data)
	e.delivered++
	if n := f.cfg.in.AbortAfterResponseChunks; n > 0 && e.delivered >= n {
		// The client went away: the filter is destroyed, closing the stream; the router resets
		// the upstream request.
		f.out.Aborted = true
		f.trace(traceEntry{Dir: "stream", Type: "downstream_reset"})
		f.closeStream()
		e.upstream.cancel()
		return errStop
	}
	return nil
}

func (f *filter) encode(ctx context.Context, upstream *upstreamResult) error {
	defer upstream.cancel()
	response := upstream.response
	d := &f.resp
	d.headers = responseHeaders(response)
	noBody := response.ContentLength == 0 || response.Request.Method == http.MethodHead || response.StatusCode == 204 || response.StatusCode == 304
	chunks := make(chan upstreamChunk, 16)
	go readUpstream(response.Body, response.ContentLength, chunks)
	e := &encoder{f: f, upstream: upstream}
	if d.sendHeaders && !f.complete {
		if err := f.openStream(ctx); err != nil {
			return err
		}
		if err := f.sendHeaders(d, noBody); err != nil {
			return err
		}
		e.headersPending = true
	}
	if d.shouldRemoveContentLength() {
		d.headers.remove("content-length")
	}
	if !e.headersPending {
		// Headers not sent to the processor continue to the client at once, in every body mode.
		e.clientHeaders()
	}
	var buffering []byte
	for {
		outstanding := !f.complete && (e.headersPending || e.bufferedWait || len(e.queue) > 0)
		if !outstanding && e.upstreamDone {
			e.clientHeaders()
			return nil
		}
		var ev event
		if outstanding {
			var source <-chan upstreamChunk
			if !e.upstreamDone {
				source = chunks
			}
			var err error
			if ev, err = f.await(e.expecting(), source); err != nil {
				return err
			}
			if ev.response == nil && ev.chunk == nil {
				// The processor closed the stream: everything still held passes unprocessed.
				for _, q := range e.queue {
					e.held = append(e.held, q.data...)
				}
				e.queue = nil
				e.held = append(e.held, buffering...)
				if err := e.deliver(e.held); err != nil {
					return err
				}
				e.held, buffering, e.headersPending, e.bufferedWait = nil, nil, false, false
				continue
			}
		} else {
			select {
			case chunk := <-chunks:
				ev.chunk = &chunk
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if chunk := ev.chunk; chunk != nil {
			if chunk.err != nil {
				return errors.New("reading the upstream response: " + chunk.err.Error())
			}
			e.upstreamDone = e.upstreamDone || chunk.endOfStream
			switch {
			case f.complete || d.replaced:
				if !d.replaced {
					if err := e.deliver(append(buffering, chunk.data...)); err != nil {
						return err
					}
					buffering = nil
				}
			case e.headersPending:
				e.held = append(e.held, chunk.data...)
				e.heldComplete = chunk.endOfStream
			case d.bodyMode == procmodev3.ProcessingMode_BUFFERED:
				buffering = append(buffering, chunk.data...)
				if chunk.endOfStream {
					if err := f.sendBody(d, buffering, true); err != nil {
						return err
					}
					e.bufferedWait = true
				}
			case d.bodyMode == procmodev3.ProcessingMode_STREAMED:
				if err := f.sendBody(d, chunk.data, chunk.endOfStream); err != nil {
					return err
				}
				e.queue = append(e.queue, queuedChunk{chunk.data, chunk.endOfStream})
			default:
				if err := e.deliver(chunk.data); err != nil {
					return err
				}
			}
			continue
		}
		response := ev.response
		switch {
		case e.headersPending:
			f.traceReceived(response, true)
			if err := f.handleHeadersResponse(d, response, e.held); err != nil {
				return err
			}
			e.headersPending = false
			if err := e.afterHeaders(noBody, &buffering); err != nil {
				return err
			}
		case e.bufferedWait:
			f.traceReceived(response, false)
			body, err := f.handleBufferedBody(d, response, buffering, !f.clientStarted())
			if err != nil {
				return err
			}
			e.bufferedWait, buffering = false, nil
			if err := e.deliver(body); err != nil {
				return err
			}
		default:
			f.traceReceived(response, false)
			front := e.queue[0]
			e.queue = e.queue[1:]
			data, err := f.streamedChunkResponse(d, response, front.data)
			if err != nil {
				return err
			}
			if err := e.deliver(data); err != nil {
				return err
			}
			if front.endOfStream {
				f.closeStream()
			}
		}
	}
}

func (e *encoder) expecting() string {
	switch {
	case e.headersPending:
		return "response_headers"
	default:
		return "response_body"
	}
}

// afterHeaders continues the response once its headers response was handled.
func (e *encoder) afterHeaders(noBody bool, buffering *[]byte) error {
	f, d := e.f, &e.f.resp
	if d.replaced {
		// CONTINUE_AND_REPLACE: the processor's body replaces the upstream's, which is dropped.
		e.upstream.cancel()
		e.upstreamDone = true
		f.closeStream()
		return e.deliver(d.replacedBody)
	}
	if noBody || d.bodyMode == procmodev3.ProcessingMode_NONE {
		f.closeStream() // closeGrpcStreamIfLastRespReceived: nothing more to send
	}
	switch {
	case noBody:
		e.clientHeaders()
	case e.heldComplete && d.bodyMode != procmodev3.ProcessingMode_NONE:
		// The whole body came in while the headers were out: one buffered message, whatever the mode.
		*buffering = e.held
		if err := f.sendBody(d, e.held, true); err != nil {
			return err
		}
		e.bufferedWait = true
	case d.bodyMode == procmodev3.ProcessingMode_BUFFERED:
		*buffering = e.held
	case d.bodyMode == procmodev3.ProcessingMode_STREAMED:
		e.clientHeaders()
		if len(e.held) > 0 {
			if err := f.sendBody(d, e.held, false); err != nil {
				return err
			}
			e.queue = append(e.queue, queuedChunk{e.held, false})
		}
	default:
		if err := e.deliver(e.held); err != nil {
			return err
		}
	}
	e.held = nil
	return nil
}
