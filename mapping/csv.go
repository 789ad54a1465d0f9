package mapping

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"strings"

	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/transform"
)

// MapCSV maps a whole CSV file (a feed such as an inventory snapshot) to one
// canonical document. Columns are named by the header row.
func (m *Map) MapCSV(in io.Reader, env Env) (Document, []string, error) {
	if m.Source.Format != "csv" {
		return Document{}, nil, fmt.Errorf("%s: not a CSV mapping", m.File)
	}
	switch strings.ToLower(m.Source.Encoding) {
	case "windows-1252", "cp1252":
		in = transform.NewReader(in, charmap.Windows1252.NewDecoder())
	case "iso-8859-1", "latin1":
		in = transform.NewReader(in, charmap.ISO8859_1.NewDecoder())
	}
	data, err := io.ReadAll(in)
	if err != nil {
		return Document{}, nil, err
	}
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))
	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comma = m.Source.Delimiter
	cr.FieldsPerRecord = -1
	records, err := cr.ReadAll()
	if err != nil {
		return Document{}, nil, fmt.Errorf("%s: CSV: %w", env.FileName, err)
	}
	if len(records) == 0 {
		return Document{}, nil, fmt.Errorf("%s: CSV file is empty (no header row)", env.FileName)
	}
	r := newRun(m, env)
	r.header = map[string]int{}
	for i, h := range records[0] {
		h = strings.TrimSpace(h)
		if _, dup := r.header[h]; dup {
			return Document{}, nil, fmt.Errorf("%s: CSV header has column %q twice", env.FileName, h)
		}
		r.header[h] = i
	}
	var missing []error
	for _, col := range m.columns {
		if _, ok := r.header[col.name]; !ok {
			missing = append(missing, fmt.Errorf("%s:%d: column %q is not in the header of %s (%s)", m.File, col.line, col.name, env.FileName, r.headerNames()))
		}
	}
	if len(missing) > 0 {
		return Document{}, nil, &DocError{Errs: missing}
	}
	for _, rec := range records[1:] {
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		r.rows = append(r.rows, rec)
	}
	return r.finish()
}
