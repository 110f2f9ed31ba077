from pcapcheck.cli import main

main()
