from openassistants.cli import main

main()
