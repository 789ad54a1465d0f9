package edi

import (
	"bufio"
	"io"
	"strconv"
)

// JSONWriter streams the parse result of a whole input as one JSON document
// (the shape is documented in docs/x12-json.md). Memory stays bounded by the
// largest transaction set: each set is written when it ends.
type JSONWriter struct {
	w      *bufio.Writer
	b      []byte
	nIC    int
	nGroup int
	nSet   int
}

// NewJSONWriter returns a JSONWriter writing to w; call Options to hook it
// into Process, and Close at the end.
func NewJSONWriter(w io.Writer) *JSONWriter {
	jw := &JSONWriter{w: bufio.NewWriterSize(w, 64<<10)}
	jw.w.WriteString(`{"interchanges":[`)
	return jw
}

// Hook sets the Process callbacks (and Tree) on opt.
func (j *JSONWriter) Hook(opt *Options) {
	opt.Tree = true
	opt.OnInterchangeStart = j.interchangeStart
	opt.OnGroupStart = j.groupStart
	opt.OnSet = j.set
	opt.OnGroup = j.group
	opt.OnInterchange = j.interchange
}

func (j *JSONWriter) flush() {
	j.w.Write(j.b)
	j.b = j.b[:0]
}

func (j *JSONWriter) str(key, v string) {
	j.b = append(j.b, '"')
	j.b = append(j.b, key...)
	j.b = append(j.b, '"', ':')
	j.b = appendJSONString(j.b, v)
	j.b = append(j.b, ',')
}

func (j *JSONWriter) num(key string, v int64) {
	j.b = append(j.b, '"')
	j.b = append(j.b, key...)
	j.b = append(j.b, '"', ':')
	j.b = strconv.AppendInt(j.b, v, 10)
	j.b = append(j.b, ',')
}

func (j *JSONWriter) interchangeStart(ic *Interchange) {
	if j.nIC > 0 {
		j.b = append(j.b, ',')
	}
	j.nIC++
	j.nGroup = 0
	j.b = append(j.b, '{')
	j.str("control", ic.Control)
	j.b = append(j.b, `"sender":{`...)
	j.str("qualifier", ic.SenderQualifier)
	j.b = append(j.b[:len(j.b)-1], `,"id":`...)
	j.b = appendJSONString(j.b, ic.SenderID)
	j.b = append(j.b, `},"receiver":{`...)
	j.str("qualifier", ic.ReceiverQualifier)
	j.b = append(j.b[:len(j.b)-1], `,"id":`...)
	j.b = appendJSONString(j.b, ic.ReceiverID)
	j.b = append(j.b, `},`...)
	j.str("date", ic.Date)
	j.str("time", ic.Time)
	j.str("version", ic.Version)
	j.b = append(j.b, `"ackRequested":`...)
	j.b = strconv.AppendBool(j.b, ic.AckRequested)
	j.b = append(j.b, ',')
	j.str("usage", ic.Usage)
	d := ic.Delimiters
	j.b = append(j.b, `"delimiters":{`...)
	j.str("element", string(d.Element))
	j.str("component", string(d.Component))
	rep := ""
	if d.Repetition != 0 {
		rep = string(d.Repetition)
	}
	j.str("repetition", rep)
	j.str("segment", string(d.Segment))
	j.b[len(j.b)-1] = '}'
	j.b = append(j.b, ',')
	j.num("offset", ic.Pos.Offset)
	j.b = append(j.b, `"groups":[`...)
	j.flush()
}

func (j *JSONWriter) groupStart(ic *Interchange, g *Group) {
	if j.nGroup > 0 {
		j.b = append(j.b, ',')
	}
	j.nGroup++
	j.nSet = 0
	j.b = append(j.b, '{')
	j.str("functionalId", g.FunctionalID)
	j.str("control", g.Control)
	j.str("version", g.Version)
	j.str("sender", g.Sender)
	j.str("receiver", g.Receiver)
	j.str("date", g.Date)
	j.str("time", g.Time)
	j.num("offset", g.Pos.Offset)
	j.b = append(j.b, `"sets":[`...)
	j.flush()
}

func (j *JSONWriter) set(ic *Interchange, g *Group, s *Set) {
	if j.nSet > 0 {
		j.b = append(j.b, ',')
	}
	j.nSet++
	j.b = append(j.b, '{')
	j.str("id", s.ID)
	j.str("control", s.Control)
	if s.ImplRef != "" {
		j.str("implementationReference", s.ImplRef)
	}
	j.str("status", s.Status)
	j.num("segments", int64(s.Segments))
	j.num("offset", s.Pos.Offset)
	j.findings(s.Findings)
	j.b = append(j.b, `,"tree":`...)
	if s.Tree != nil {
		j.b = s.Tree.AppendJSON(j.b)
	} else {
		j.b = append(j.b, "null"...)
	}
	j.b = append(j.b, '}')
	j.flush()
}

func (j *JSONWriter) group(ic *Interchange, g *Group) {
	j.b = append(j.b, `],`...)
	j.str("status", g.Status())
	j.findings(g.Findings)
	j.b = append(j.b, '}')
	j.flush()
}

func (j *JSONWriter) interchange(ic *Interchange) {
	j.b = append(j.b, `],`...)
	status := "accepted"
	if ic.Rejected() {
		status = "rejected"
	}
	j.str("status", status)
	j.findings(ic.Findings)
	j.b = append(j.b, `,"tolerances":[`...)
	for i, t := range ic.Tolerances {
		if i > 0 {
			j.b = append(j.b, ',')
		}
		j.b = append(j.b, '{')
		j.num("offset", t.Pos.Offset)
		j.b = append(j.b, `"message":`...)
		j.b = appendJSONString(j.b, t.Msg)
		j.b = append(j.b, '}')
	}
	j.b = append(j.b, "]}"...)
	j.flush()
}

func (j *JSONWriter) findings(fs []Finding) {
	j.b = append(j.b, `"findings":[`...)
	for i, f := range fs {
		if i > 0 {
			j.b = append(j.b, ',')
		}
		j.b = append(j.b, '{')
		j.str("level", f.Level.String())
		j.str("code", f.Code)
		if f.SegmentID != "" {
			j.str("segment", f.SegmentID)
			j.num("position", int64(f.Pos.InSet))
		}
		if f.LoopID != "" {
			j.str("loop", f.LoopID)
		}
		if f.Element > 0 {
			j.num("element", int64(f.Element))
		}
		if f.Component > 0 {
			j.num("component", int64(f.Component))
		}
		if f.Repetition > 0 {
			j.num("repetition", int64(f.Repetition))
		}
		if f.ElementRef != "" {
			j.str("elementRef", f.ElementRef)
		}
		if f.Value != "" {
			j.str("value", f.Value)
		}
		j.num("offset", f.Pos.Offset)
		j.num("segmentNumber", int64(f.Pos.Segment))
		j.b = append(j.b, `"message":`...)
		j.b = appendJSONString(j.b, f.Msg)
		j.b = append(j.b, '}')
	}
	j.b = append(j.b, ']')
}

// Close ends the document and flushes it.
func (j *JSONWriter) Close() error {
	j.b = append(j.b, "]}\n"...)
	j.flush()
	return j.w.Flush()
}
