"""file_search's engine, pure and testable: parsing files to text, chunking, ranking (fusion of rankings)."""
