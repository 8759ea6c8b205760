"""Family adapters: how the runner reads, validates, sets up, computes and writes each subcommand's job."""
