"""What makes a list converge on its segment: the snapshot of what an export has put in
its list, the delta of a run against it (new / changed / unchanged), and mirror mode's
removal of leavers behind a guard."""
