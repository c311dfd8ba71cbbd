from kunde.cli import main

main()
