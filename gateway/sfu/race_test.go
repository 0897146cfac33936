//go:build race

package sfu_test

const raceEnabled = true
