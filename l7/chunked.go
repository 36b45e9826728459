package l7

import "errors"

// chunkScanner finds the end of a chunked body (RFC 9112 section 7.1) in
// the bytes relayed through it.
type chunkScanner struct {
	state  uint8
	size   int64 // chunk data left, or the size being read
	digits bool  // the size line had a digit
	ext    bool  // in the size line's extensions
	line   int   // length of the trailer line so far
}

const (
	chunkSize = iota
	chunkData
	chunkDataCR
	chunkDataLF
	chunkTrailer
)

var errChunk = errors.New("malformed chunked body")

// scan consumes b up to the end of the body; end reports that it ended
// after n bytes.
func (s *chunkScanner) scan(b []byte) (n int, end bool, err error) {
	for i := 0; i < len(b); {
		switch s.state {
		case chunkSize:
			ch := b[i]
			i++
			switch {
			case ch == '\n':
				if !s.digits {
					return i, false, errChunk
				}
				s.digits, s.ext, s.line = false, false, 0
				s.state = chunkData
				if s.size == 0 {
					s.state = chunkTrailer
				}
			case s.ext || ch == '\r' || ch == ' ' || ch == '\t':
			case ch == ';':
				s.ext = true
			default:
				v := unhex(ch)
				if v < 0 || s.size >= 1<<59 {
					return i, false, errChunk
				}
				s.size = s.size<<4 | int64(v)
				s.digits = true
			}
		case chunkData:
			k := min(int64(len(b)-i), s.size)
			i += int(k)
			s.size -= k
			if s.size == 0 {
				s.state = chunkDataCR
			}
		case chunkDataCR:
			if b[i] != '\r' {
				return i, false, errChunk
			}
			i++
			s.state = chunkDataLF
		case chunkDataLF:
			if b[i] != '\n' {
				return i, false, errChunk
			}
			i++
			s.state = chunkSize
		case chunkTrailer:
			ch := b[i]
			i++
			switch {
			case ch == '\n' && s.line == 0:
				return i, true, nil
			case ch == '\n':
				s.line = 0
			case ch != '\r':
				s.line++
			}
		}
	}
	return len(b), false, nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
