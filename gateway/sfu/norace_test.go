//go:build !race

package sfu_test

const raceEnabled = false
