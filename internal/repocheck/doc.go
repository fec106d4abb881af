// Package repocheck holds tests of the repository itself rather than of
// any package: what .gitignore covers, that every example builds when
// copied out of the repository, that the examples' default ports differ,
// and that the modules' go.mod files agree. It has no code of its own.
package repocheck
