from dakd.cli import main

main()
