package edi

import (
	"fmt"
	"strings"
)

// Level says which envelope or structure a finding is about, and so which
// acknowledgement segment carries its code.
type Level uint8

const (
	LevelInterchange Level = iota + 1 // TA105 note code
	LevelGroup                        // AK905 (716)
	LevelSet                          // AK502 / IK502 (718)
	LevelSegment                      // AK304 / IK304 (720)
	LevelElement                      // AK403 / IK403 (723)
)

func (l Level) String() string {
	return [...]string{"?", "interchange", "group", "set", "segment", "element"}[l]
}

// Finding is one validation result with its X12 code and position.
type Finding struct {
	Level Level
	Code  string // the X12 code for Level (e.g. TA105 "001", AK905 "4", AK304 "8", AK403 "7")
	Pos   Position
	// Segment and element detail (LevelSegment / LevelElement).
	SegmentID  string
	LoopID     string
	Element    int    // 1-based element position (AK401-1)
	Component  int    // 1-based component position, 0 when not a composite
	Repetition int    // 1-based repetition position, 0 when not repeated
	ElementRef string // data element reference number (AK402)
	Value      string // copy of the bad value (AK404), at most 99 bytes
	Msg        string
}

func (f Finding) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", f.Pos)
	switch f.Level {
	case LevelInterchange:
		fmt.Fprintf(&b, "interchange error TA105=%s", f.Code)
	case LevelGroup:
		fmt.Fprintf(&b, "group error AK905=%s", f.Code)
	case LevelSet:
		fmt.Fprintf(&b, "transaction set error AK502=%s", f.Code)
	case LevelSegment:
		fmt.Fprintf(&b, "segment %s error AK304=%s", f.SegmentID, f.Code)
	case LevelElement:
		fmt.Fprintf(&b, "element %s%02d", f.SegmentID, f.Element)
		if f.Component > 0 {
			fmt.Fprintf(&b, "-%d", f.Component)
		}
		if f.Repetition > 1 {
			fmt.Fprintf(&b, " repetition %d", f.Repetition)
		}
		if f.ElementRef != "" {
			fmt.Fprintf(&b, " (DE %s)", f.ElementRef)
		}
		fmt.Fprintf(&b, " error AK403=%s", f.Code)
	}
	if f.Msg != "" {
		b.WriteString(": " + f.Msg)
	}
	return b.String()
}

// TA1 note codes (TA105, data element I18).
const (
	TA1NoError              = "000"
	TA1ControlMismatch      = "001"
	TA1StandardUnsupported  = "002"
	TA1VersionUnsupported   = "003"
	TA1BadTerminator        = "004"
	TA1BadSenderQualifier   = "005"
	TA1BadSenderID          = "006"
	TA1BadReceiverQualifier = "007"
	TA1BadReceiverID        = "008"
	TA1BadAuthQualifier     = "010"
	TA1BadAuthInfo          = "011"
	TA1BadSecQualifier      = "012"
	TA1BadSecInfo           = "013"
	TA1BadDate              = "014"
	TA1BadTime              = "015"
	TA1BadStandardsID       = "016"
	TA1BadVersion           = "017"
	TA1BadControlNumber     = "018"
	TA1BadAckRequested      = "019"
	TA1BadTestIndicator     = "020"
	TA1BadGroupCount        = "021"
	TA1BadControlStructure  = "022"
	TA1PrematureEOF         = "023"
	TA1BadContent           = "024"
	TA1Duplicate            = "025"
	TA1BadElementSeparator  = "026"
	TA1BadComponentSep      = "027"
)

// Functional group syntax error codes (AK905-AK909, data element 716).
const (
	GroupNotSupported        = "1"
	GroupVersionNotSupported = "2"
	GroupTrailerMissing      = "3"
	GroupControlMismatch     = "4"
	GroupCountMismatch       = "5"
	GroupControlSyntax       = "6"
	GroupControlNotUnique    = "19"
)

// Transaction set syntax error codes (AK502-AK506 / IK502-IK506, element 718).
const (
	SetNotSupported        = "1"
	SetTrailerMissing      = "2"
	SetControlMismatch     = "3"
	SetCountMismatch       = "4"
	SetSegmentsInError     = "5"
	SetBadIdentifier       = "6"
	SetBadControlNumber    = "7"
	SetControlNotUnique    = "23"
	SetImplSegmentsInError = "I5"
)

// Segment syntax error codes (AK304 / IK304, element 720).
const (
	SegUnrecognized  = "1"
	SegUnexpected    = "2"
	SegMandatory     = "3"
	SegLoopOverMax   = "4"
	SegOverMaxUse    = "5"
	SegNotInSet      = "6"
	SegOutOfSequence = "7"
	SegElementErrors = "8"
)

// Element syntax error codes (AK403 / IK403, element 723).
const (
	ElMandatory    = "1"
	ElConditional  = "2"
	ElTooMany      = "3"
	ElTooShort     = "4"
	ElTooLong      = "5"
	ElBadCharacter = "6"
	ElBadCode      = "7"
	ElBadDate      = "8"
	ElBadTime      = "9"
	ElExclusion    = "10"
	ElTooManyReps  = "12"
	ElTooManyComps = "13"
)
