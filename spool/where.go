package spool

import (
	"strconv"
	"strings"
	"time"
)

// where accumulates a WHERE clause for either backend. Conditions are
// written with ? for their arguments; the dialect decides how a placeholder,
// a list membership and a time value are rendered, so that what a filter
// means is written once (fileConds, documentConds) for both.
type where struct {
	pg    bool // PostgreSQL: $1, $2 … placeholders, col = ANY($n) lists, timestamptz values; SQLite: ?, col IN (?, …), microseconds
	conds []string
	args  []any
}

func sqliteWhere() *where { return &where{} }
func pgWhere() *where     { return &where{pg: true} }

// arg appends v and returns its placeholder.
func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	if w.pg {
		return "$" + strconv.Itoa(len(w.args))
	}
	return "?"
}

func (w *where) add(cond string, args ...any) {
	if w.pg {
		for _, a := range args {
			cond = strings.Replace(cond, "?", w.arg(a), 1)
		}
	} else {
		w.args = append(w.args, args...)
	}
	w.conds = append(w.conds, cond)
}

func (w *where) eq(col, v string) {
	if v != "" {
		w.add(col+" = ?", v)
	}
}

// member is the condition "col is one of vs" with its arguments, for add.
func (w *where) member(col string, vs []string) (string, []any) {
	if w.pg {
		return col + " = ANY(?)", []any{vs}
	}
	args := make([]any, len(vs))
	for i, v := range vs {
		args[i] = v
	}
	return col + " IN (" + placeholders(len(vs)) + ")", args
}

func (w *where) in(col string, vs []string) {
	if len(vs) > 0 {
		cond, args := w.member(col, vs)
		w.add(cond, args...)
	}
}

func (w *where) time(t time.Time) any {
	if w.pg {
		return norm(t)
	}
	return micros(norm(t))
}

func (w *where) between(col string, since, until time.Time) {
	if !since.IsZero() {
		w.add(col+" >= ?", w.time(since))
	}
	if !until.IsZero() {
		w.add(col+" < ?", w.time(until))
	}
}

func (w *where) clause() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// newest is the tail of a listing of at most limit rows (default def, at
// most 1000), newest first.
func (w *where) newest(limit, def int) string {
	if limit <= 0 {
		limit = def
	}
	clause := w.clause()
	return clause + " ORDER BY id DESC LIMIT " + w.arg(min(limit, 1000))
}

// page appends keyset paging and returns the query's tail and the limit;
// one row more than the limit is asked for, to tell whether a next page
// exists (see pageOf).
func (w *where) page(p Page) (string, int) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	order := "DESC"
	if p.Ascending {
		order = "ASC"
	}
	if p.After != "" {
		if p.Ascending {
			w.add("id > ?", p.After)
		} else {
			w.add("id < ?", p.After)
		}
	}
	clause := w.clause()
	return clause + " ORDER BY id " + order + " LIMIT " + w.arg(limit+1), limit
}

// pageOf cuts a listing fetched by page to limit rows and returns the
// cursor of the next page ("" on the last).
func pageOf[T any](rows []T, limit int, id func(*T) ID) ([]T, string) {
	if len(rows) <= limit {
		return rows, ""
	}
	rows = rows[:limit]
	return rows, string(id(&rows[limit-1]))
}

// fileConds is what a FileFilter selects.
func fileConds(w *where, f FileFilter) {
	w.eq("partner", f.Partner)
	w.eq("channel", f.Channel)
	w.eq("sha256", f.SHA256)
	w.in("state", states(f.States))
	w.between("received_at", f.Since, f.Until)
}

// documentConds is what a DocumentFilter selects.
func documentConds(w *where, f DocumentFilter) {
	w.eq("partner", f.Partner)
	w.in("state", states(f.States))
	w.in("type", f.Types)
	w.eq("file_id", string(f.FileID))
	w.eq("interchange_id", string(f.InterchangeID))
	if f.InterchangeControl != "" {
		w.add("interchange_id IN (SELECT id FROM interchanges WHERE control = ?)", f.InterchangeControl)
	}
	w.eq("group_control", f.GroupControl)
	w.eq("set_control", f.SetControl)
	w.eq("business_key", f.BusinessKey)
	if f.Ref != "" {
		w.add("(business_key = ? OR id IN (SELECT document_id FROM document_refs WHERE ref = ?))", f.Ref, f.Ref)
	}
	w.eq("idempotency_key", f.IdempotencyKey)
	if f.Direction != "" {
		w.add("file_id IN (SELECT id FROM files WHERE direction = ?)", f.Direction)
	}
	if len(f.WasIn) > 0 {
		cond, args := w.member("to_state", states(f.WasIn))
		w.add("id IN (SELECT subject FROM events WHERE "+cond+")", args...)
	}
	w.between("created_at", f.Since, f.Until)
}
