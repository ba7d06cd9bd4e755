from tapstack.cli import main

main()
