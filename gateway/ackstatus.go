package gateway

import (
	"strconv"
	"strings"
	"time"

	"github.com/edigw/edigw/edi"
	"github.com/edigw/edigw/mapping"
)

// ackStatusSchema is the canonical document the ERP receives for a
// partner's 997/999 (mapping/schemas/functional-ack-status.v1.json).
const ackStatusSchema = "functional-ack-status.v1"

// ackStatusDocument builds the canonical functional-ack status of a
// partner's 997/999 from its loop tree: the group's result (AK1, AK9) and
// each set's (AK2..AK5 / IK5) with its segment and element errors
// (AK3/IK3, AK4/IK4).
func ackStatusDocument(s *edi.Set, receivedAt time.Time) mapping.Document {
	doc := map[string]any{"ackType": s.ID, "direction": "inbound", "receivedAt": receivedAt.UTC().Format(time.RFC3339)}
	var sets []any
	var set map[string]any
	var segErr map[string]any
	for seg := range s.Tree.Segments() {
		switch seg.TagString() {
		case "AK1":
			doc["functionalId"], doc["groupControl"] = seg.Value(1), seg.Value(2)
		case "AK2":
			set = map[string]any{"setId": seg.Value(1), "control": seg.Value(2)}
			if v := seg.Value(3); v != "" {
				set["implementationRef"] = v
			}
			sets = append(sets, set)
		case "AK3", "IK3":
			if set == nil {
				continue
			}
			segErr = map[string]any{"segmentId": seg.Value(1), "code": seg.Value(4)}
			putPositive(segErr, "position", seg.Value(2))
			if v := seg.Value(3); v != "" {
				segErr["loopId"] = v
			}
			appendErr(set, segErr)
		case "AK4", "IK4":
			if set == nil {
				continue
			}
			e := map[string]any{"code": seg.Value(3)}
			for k, v := range segErr {
				if k != "code" {
					e[k] = v
				}
			}
			if segErr == nil {
				e["segmentId"] = "?"
			}
			putPositive(e, "element", string(seg.Component(1, 1)))   // AK401-1 (IK401-1)
			putPositive(e, "component", string(seg.Component(1, 2))) // AK401-2
			if v := seg.Value(2); v != "" {
				e["elementRef"] = v
			}
			if v := seg.Value(4); v != "" {
				e["value"] = v
			}
			appendErr(set, e)
		case "AK5", "IK5":
			if set == nil {
				continue
			}
			code := seg.Value(1)
			set["code"], set["status"] = code, setStatus(code)
			if codes := valuesFrom(seg, 2); len(codes) > 0 {
				set["setErrorCodes"] = codes
			}
			set, segErr = nil, nil
		case "AK9":
			code := seg.Value(1)
			doc["groupCode"], doc["status"] = code, groupStatus(code)
			for i, k := range []string{"includedSets", "receivedSets", "acceptedSets"} {
				if n, err := strconv.Atoi(seg.Value(i + 2)); err == nil {
					doc[k] = n
				}
			}
			if codes := valuesFrom(seg, 5); len(codes) > 0 {
				doc["groupErrorCodes"] = codes
			}
		}
	}
	if len(sets) > 0 {
		doc["transactionSets"] = sets
	}
	return mapping.DocumentFrom(doc)
}

// valuesFrom returns the non-empty elements of seg from position i on (the
// repeated error codes of AK5/IK5 and AK9).
func valuesFrom(seg *edi.Segment, i int) []any {
	var vs []any
	for ; i <= seg.Len(); i++ {
		if v := seg.Value(i); v != "" {
			vs = append(vs, v)
		}
	}
	return vs
}

func appendErr(set map[string]any, e map[string]any) {
	errs, _ := set["errors"].([]any)
	set["errors"] = append(errs, e)
}

func setStatus(code string) string {
	switch code {
	case "A":
		return "accepted"
	case "E":
		return "accepted-with-errors"
	}
	return "rejected"
}

func groupStatus(code string) string {
	switch strings.ToUpper(code) {
	case "A":
		return "accepted"
	case "E":
		return "accepted-with-errors"
	case "P":
		return "partially-accepted"
	}
	return "rejected"
}

// putPositive sets m[key] to s as a number when s is a positive integer
// (positions and element references; anything else is left out).
func putPositive(m map[string]any, key, s string) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		m[key] = n
	}
}
