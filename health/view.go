package health

import "cmp"

// The agreed view. Every node holds the same records (gossip spreads them)
// and the same configuration (Raft) and live-node list (gossip), so every
// node computing agree on them derives the same view. The rule for a member:
//
//  1. If any of its currently assigned checkers has reported, the member is
//     up unless every one of them that reported says down. One checker that
//     can reach the member outweighs one that cannot: the disagreement is
//     more likely the checker's network than the member.
//  2. Else, if some other checker reported on it before (a checker that has
//     since died or been reassigned), the newest such verdict holds (highest
//     seq, ties to up). This keeps the last agreed state while new checkers
//     get their first verdicts, and on a node cut off from the others, which
//     sees only itself alive and becomes every member's checker.
//  3. Else (a new member) it is up: fail open until a checker says otherwise.

// verdicts is member -> checker -> that checker's latest record.
type verdicts map[MemberKey]map[string]record

// agreeOne is one member's state in the view, from its assigned checkers
// and the records of every checker that reported on it.
func agreeOne(assigned []string, byChecker map[string]record) bool {
	reported := false
	for _, c := range assigned {
		if r, ok := byChecker[c]; ok {
			if r.up {
				return true
			}
			reported = true
		}
	}
	if reported {
		return false
	}
	var newest *record
	for _, r := range byChecker {
		if newest == nil || cmp.Compare(r.seq, newest.seq) > 0 || (r.seq == newest.seq && r.up) {
			newest = &r
		}
	}
	if newest != nil {
		return newest.up
	}
	return true
}
