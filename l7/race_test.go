//go:build race

package l7

// raceEnabled: the race detector drops sync.Pool items at random, so
// allocation bounds do not hold under it.
const raceEnabled = true
