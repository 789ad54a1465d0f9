//go:build !amd64

package edi

func sepMasks64(p *byte, sep, term byte) (seps, terms uint64) {
	return masks64Go(p, sep, term)
}

func plainMasks64(p *byte, sep, term, comp, rep byte) (seps, terms, odd uint64) {
	return plainMasks64Go(p, sep, term, comp, rep)
}

// useIndexAsm: no assembly index loop here.
var useIndexAsm = false

func indexAVX2(p *byte, nblk int, keep uint64, sep, term byte, base int32, idx *int32, tix *int32) (n, nt int) {
	panic("indexAVX2 without useIndexAsm")
}

func indexPlainAVX2(p *byte, nblk int, keep uint64, sep, term, comp, rep byte, base int32, idx *int32, tix *int32) (n, nt int) {
	panic("indexPlainAVX2 without useIndexAsm")
}
