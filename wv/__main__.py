from wv.cli import main

main()
