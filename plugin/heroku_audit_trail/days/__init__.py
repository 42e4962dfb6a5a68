"""Reading days: the day arithmetic of the cursor (`window`), the one pass over a day that
every command uses (`engine`), and what it holds meanwhile (`spool`, `ahead`)."""
