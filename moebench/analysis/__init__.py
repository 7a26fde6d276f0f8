"""ResultSet -> statistics -> claim verdicts; check and compare read results the same way."""
