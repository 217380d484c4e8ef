"""Start-up programmes and the credits ledger: partners fund programmes, programmes grant credits,
requests spend them (two-phase, exact across replicas), statements and charts show where they went."""
