from dr.cli.main import main

main()
