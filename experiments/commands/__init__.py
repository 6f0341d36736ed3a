"""The command-line programs: each parses its options, calls the library and prints."""
